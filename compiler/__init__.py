"""LCP toolkit core: the integer IR, the QONNX front end, the golden reference and the oracle.

The subpackages keep the project's folders: ``lcp.models`` (Brevitas model zoo and training),
``lcp.hw`` (Amaranth hardware), ``lcp.synth`` (synthesis flows), ``lcp.sw`` (drivers, cluster
runtime, command line). Data flows one way: model -> IR -> {golden, hardware, runtime}.
"""

from .ir import IRError, Model, load, save
from .frontend import FrontendError, compile_onnx
from .golden import Golden
from .executor import Executor, get_executor

from pathlib import Path
import tempfile
import warnings

__all__ = ["IRError", "FrontendError", "Model", "load", "save", "compile_onnx", "Golden",
           "Executor", "get_executor", "compile_torch"]


def compile_torch(module, example, *, dynamo: bool = False, name: str | None = None) -> Model:
    """Export a Brevitas module to QONNX (in a temporary folder) and compile it to the IR."""
    from brevitas.export import export_qonnx

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{name or type(module).__name__}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_qonnx(module.eval(), example, export_path=str(path), dynamo=dynamo)
        return compile_onnx(path, name=name)
