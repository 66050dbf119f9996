"""The golden reference: bit-exact, vectorized integer execution of the IR in numpy.

Every layer computes on integer tensors (batch first, channels first) with its op's
definition in the op table (:meth:`lcp.ops.OpDef.run`; exactness of the BLAS paths is argued
there).
"""

from __future__ import annotations

import numpy as np

from .executor import Executor
from .ir import IRError, Layer, Model, TensorSpec

__all__ = ["run_layer", "run_graph", "Golden", "GoldenExecutor"]


def run_layer(layer: Layer, xs: list[np.ndarray], specs: list[TensorSpec]) -> np.ndarray:
    """Run one layer on batch-first int64 arrays ``xs`` whose ranges are ``specs``."""
    return layer.opdef.run(layer, xs, specs)


def run_graph(model: Model, graph, inputs: list[np.ndarray],
              trace: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Run one branch (or the merge) of ``model``; record every tensor in ``trace`` if given."""
    env = dict(zip(graph.inputs, inputs))
    for layer in graph.layers:
        ins = [env[t] for t in layer.inputs]
        env[layer.output] = run_layer(layer, ins, [model.tensors[t] for t in layer.inputs])
        if trace is not None:
            trace[layer.output] = env[layer.output]
    return env[graph.output]


class Golden:
    """Bit-exact integer execution of an IR :class:`~lcp.ir.Model`.

    ``run_int`` maps integer inputs ``(N, *model.input.shape)`` to the integer output;
    ``run`` quantizes float inputs with the model's input quantizer and dequantizes the output.
    """

    def __init__(self, model: Model):
        self.model = model

    def check_int_input(self, xq: np.ndarray, where: str = "input") -> np.ndarray:
        spec = self.model.input
        xq = np.asarray(xq)
        if xq.dtype.kind not in "iu":
            raise IRError(f"{where}: integer input expected, got dtype {xq.dtype}")
        if tuple(xq.shape[1:]) != tuple(spec.shape) or xq.ndim != len(spec.shape) + 1:
            raise IRError(f"{where}: shape {tuple(xq.shape)} does not match the model's "
                          f"(N, {', '.join(map(str, spec.shape))})")
        if xq.size and (xq.min() < spec.lo or xq.max() > spec.hi):
            raise IRError(f"{where}: values outside the input range [{spec.lo}, {spec.hi}]")
        if spec.bipolar and xq.size and np.any(xq == 0):
            raise IRError(f"{where}: a bipolar input takes only -1 and +1")
        return xq.astype(np.int64, copy=False)

    def run_branch(self, index: int, xq: np.ndarray, trace=None, exchanged=()) -> np.ndarray:
        """Branch ``index`` on input ``xq``; ``exchanged``: the values of its inputs from other
        branches, in the order of ``branch.inputs[1:]``."""
        return run_graph(self.model, self.model.branches[index], [xq, *exchanged], trace)

    def run_merge(self, branch_outputs: list[np.ndarray], trace=None) -> np.ndarray:
        return run_graph(self.model, self.model.merge, list(branch_outputs), trace)

    def run_int(self, xq: np.ndarray, trace: dict | None = None) -> np.ndarray:
        xq = self.check_int_input(xq)
        m = self.model
        if not m.exchanges:
            outs = [self.run_branch(i, xq, trace) for i in range(len(m.branches))]
            return self.run_merge(outs, trace)
        env = {m.input.name: xq}
        for _, layer in m.schedule():
            env[layer.output] = run_layer(layer, [env[t] for t in layer.inputs],
                                          [m.tensors[t] for t in layer.inputs])
            if trace is not None:
                trace[layer.output] = env[layer.output]
        return self.run_merge([env[b.output] for b in m.branches], trace)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.model.dequant(self.run_int(self.model.input.quantize(x)))


class GoldenExecutor(Executor):
    """``--backend golden``: the bit-exact numpy reference."""

    name = "golden"

    def __init__(self, model: Model, **kwargs):
        super().__init__(model, **kwargs)
        self.golden = Golden(model)

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        return self.golden.run_int(xq)
