"""LCP hardware: streaming engines generated from the integer IR (Amaranth 0.5), their cycle and
resource models, the folding chooser, Verilog builds and RTL simulation (cocotb + Verilator).

Modules, in data-flow order:

- :mod:`.base`: stream formats (lanes, HWC order), resource figures, device budgets.
- :mod:`.window`, :mod:`.mvu`, :mod:`.pointwise`, :mod:`.plumbing`: one engine per layer kind
  (sliding-window pools, conv and dense MVUs, threshold/ReLU/add/concat) and the plumbing
  (FIFOs, lane converters, broadcast, AXI4-Stream adapters), each with a *plan* that carries its
  cycle model and resource estimate next to the generator.
- :mod:`.weightstream`, :mod:`.axiread`, :mod:`.reuse`: weights from DRAM (conv/dense engines
  reading their weights over an AXI4 read master, and one reused engine per branch).
- :mod:`.plans`: the op table (IR op -> plan class: folding keys, lanes, lowering).
- :mod:`.folding`: per-layer PE/SIMD (data).
- :mod:`.graph`: IR branch / whole model -> graph of plans -> top-level component.
- :mod:`.chooser`: the folding for a latency target or a device budget.
- :mod:`.build`: Verilog, folding and report in a build folder (and a content-addressed cache).
- :mod:`.sim` (with the testbench :mod:`.tb`): Verilator simulation, the ``sim`` executor.
- :mod:`.bench`, :mod:`.demo`, :mod:`.cli`: figures, the MNIST demo, ``lcp compile`` & co.

The hardware computes the model's integer output tensor. The float output affine (the IR's
``Dequant``: ``y * scale[c] + offset[c]``, optionally ReLU, which holds a TensorNorm or any final
scale and bias) stays in software: the executors and the PYNQ driver apply it to the integers
the accelerator returns, exactly as the golden reference does.
"""

from .base import DEVICES, Resources, StreamFormat
from .build import HwBuild, generate
from .chooser import choose
from .folding import Folding

__all__ = ["DEVICES", "Resources", "StreamFormat", "HwBuild", "generate", "Folding", "choose"]
