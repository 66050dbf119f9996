"""One interface for "run this model": executors behind ``lcp run --backend NAME``.

An :class:`Executor` is built from an IR :class:`~lcp.ir.Model` (and, for backends that need
it, the source ONNX file) and maps a batch of inputs to outputs:

* :meth:`Executor.run_int`: integer inputs ``(N, *model.input.shape)`` -> integer outputs;
* :meth:`Executor.run`: float inputs -> float outputs (the model's input quantizer, then
  :meth:`run_int`, then the model's dequantization), unless the backend overrides it.

A new backend is one class, declared as a package entry point in the group ``lcp.backends``
(``name = "module:Class"`` in ``pyproject.toml``) and imported on first use, so that e.g. the
simulator's dependencies load only when asked for and the compiler names no module of the
packages above it. :func:`register` adds one at run time (a plugin, a test).
"""

from __future__ import annotations

import abc
import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

import numpy as np

from .ir import IRError, Model

__all__ = ["Executor", "BACKENDS", "register", "get_executor", "backend_names"]


class Executor(abc.ABC):
    """Base class of every backend; ``name`` is what ``--backend`` takes."""

    name: ClassVar[str] = ""

    def __init__(self, model: Model, *, source: str | Path | None = None, **options):
        self.model = model
        self.source = Path(source) if source is not None else None
        self.options = options

    @abc.abstractmethod
    def run_int(self, xq: np.ndarray) -> np.ndarray:
        """Integer outputs for integer inputs (batch first)."""

    def run(self, x: np.ndarray) -> np.ndarray:
        """Float outputs for float inputs (batch first)."""
        return self.model.dequant(self.run_int(self.model.input.quantize(x)))

    def close(self) -> None:
        """Release processes, simulators or devices held by the executor."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


#: Entry-point group of the backends.
GROUP = "lcp.backends"

#: Backend name -> "module:Class": the compiler's own, then every installed entry point.
BACKENDS: dict[str, str] = {
    "golden": "lcp.golden:GoldenExecutor",
    "qonnx": "lcp.oracle:QonnxExecutor",
    **{e.name: e.value for e in entry_points(group=GROUP)},
}


def register(name: str, target: str) -> None:
    """Register backend ``name`` as ``"module:Class"``."""
    BACKENDS[name] = target


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_executor(name: str, model: Model, **kwargs) -> Executor:
    """Instantiate backend ``name`` for ``model``; :class:`IRError` lists the known backends."""
    target = BACKENDS.get(name)
    if target is None:
        raise IRError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    module, _, cls = target.partition(":")
    try:
        klass = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise IRError(f"backend {name!r} is not available in this installation ({e})") from None
    return klass(model, **kwargs)
