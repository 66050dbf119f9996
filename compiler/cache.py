"""The toolkit's one content-addressed build cache, with its locking.

Every builder that takes long (the hardware generator, the folding chooser, the PYNQ top, its
Verilator build, the cluster benchmark's compiled models) keeps its results here, under
:func:`cache_root`, in entries named by a digest of everything the result depends on
(:func:`digest`, :func:`source_digest` for the generator's own code). :func:`build_once` builds
an entry under an exclusive file lock, so concurrent processes (pytest-xdist workers, Dask
workers, two shells) wait for one build instead of racing; an entry counts only once its stamp
file is written, so an interrupted build is redone, never half-read.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

__all__ = ["cache_root", "digest", "source_digest", "locked", "build_once", "STAMP"]

T = TypeVar("T")

#: File written into an entry when its build has finished.
STAMP = ".complete"


def cache_root() -> Path:
    """The cache folder: ``$LCP_HW_CACHE``, else ``$XDG_CACHE_HOME/lcp/hw`` (``~/.cache``)."""
    env = os.environ.get("LCP_HW_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lcp" / "hw"


def digest(*parts) -> str:
    """Content address of ``parts`` (each turned into text; 24 hex digits of SHA-256)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def source_digest(*paths: Path) -> str:
    """Digest of source files: a changed generator never reuses what an older one built."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created with its folder if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_once(root: Path, key: str, build: Callable[[Path], T],
               load: Callable[[Path], T]) -> T:
    """The entry ``root/key``: ``load(folder)`` when it is complete, else ``build(folder)``
    into an empty folder (a leftover of an interrupted build is removed first), then stamped.

    Both run under the lock ``root/key.lock``; whatever ``build`` returns is returned.
    """
    root = Path(root)
    folder = root / key
    with locked(root / f"{key}.lock"):
        if (folder / STAMP).exists():
            return load(folder)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        value = build(folder)
        (folder / STAMP).write_text("")
        return value
