"""IRs the hardware cannot build fail at compile time with an IRError naming the layer."""

import numpy as np
import pytest

from lcp.hw.build import generate
from lcp.hw.chooser import choose
from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch
from lcp.ir import IRError, Layer

from tests.hw.irgen import Builder


def _conv_model():
    b = Builder((2, 6, 6), seed=0)
    x = b.conv("input", 6, 3, pad=1)
    return b.model(), x


def test_pe_does_not_divide():
    m, x = _conv_model()
    with pytest.raises(IRError, match=rf"layer '{x}': PE=4 does not divide the 6 outputs"):
        lower_branch(m, 0, Folding({x: {"pe": 4, "simd": 1}}))


def test_simd_does_not_divide():
    m, x = _conv_model()
    with pytest.raises(IRError, match=rf"layer '{x}': SIMD=5 does not divide the 18 inputs"):
        lower_branch(m, 0, Folding({x: {"pe": 1, "simd": 5}}))


def test_dense_simd_does_not_divide():
    b = Builder((1, 3, 3), seed=0)
    d = b.dense(b.flatten("input"), 4)
    m = b.model()
    with pytest.raises(IRError, match=rf"layer '{d}': SIMD=2 does not divide the 9 inputs"):
        lower_branch(m, 0, Folding({d: {"simd": 2}}))


def test_pad_not_smaller_than_kernel():
    b = Builder((1, 6, 6), seed=0)
    x = b.maxpool("input", 2, 2, pad=0)
    m = b.model()
    m.branches[0].layers[0].attrs["pads"] = (2, 0, 0, 0)
    m.tensors[x] = type(m.tensors[x])((1, 4, 3), m.tensors[x].lo, m.tensors[x].hi)
    with pytest.raises(IRError, match=rf"layer '{x}': pads .* must be smaller than the kernel"):
        lower_branch(m, 0, Folding())


def test_too_many_thresholds():
    b = Builder((1, 2, 2), in_bits=12, seed=0)
    t = b.threshold("input", 9)
    m = b.model()
    with pytest.raises(IRError, match=rf"layer '{t}': 511 thresholds per channel"):
        lower_branch(m, 0, Folding())


def test_accumulator_too_wide():
    b = Builder((1, 1, 4), in_bits=24, seed=0)
    d = b.dense(b.flatten("input"), 2, wbits=28)
    m = b.model()
    with pytest.raises(IRError, match=rf"layer '{d}': the accumulator needs \d+ bits"):
        lower_branch(m, 0, Folding())


def test_bad_axis_width(tmp_path):
    m, _ = _conv_model()
    with pytest.raises(IRError, match="AXI-Stream width 12"):
        generate(m, tmp_path, folding=Folding({}, 12, 64), verilog=False)


def test_unknown_device_and_no_goal():
    m, _ = _conv_model()
    with pytest.raises(IRError, match="unknown device 'xc9'"):
        choose(m, budget="xc9")
    with pytest.raises(IRError, match="target-cycles or a --budget"):
        choose(m)


def test_budget_too_small():
    from lcp.hw.base import Resources
    m, _ = _conv_model()
    with pytest.raises(IRError, match="even the smallest folding"):
        choose(m, budget=Resources(lut=10, ff=10, dsp=0, bram=0))


def test_cli_compile_error_names_layer(tmp_path):
    """`lcp compile` prints one line naming the layer and exits 2."""
    from lcp import save
    from lcp.sw.cli import main
    m, x = _conv_model()
    save(m, tmp_path / "m")
    (tmp_path / "f.json").write_text(
        '{"format": "lcp-folding", "version": 1, "layers": {"%s": {"pe": 4, "simd": 1}}}' % x)
    code = main(["compile", str(tmp_path / "m.json"), "-o", str(tmp_path / "b"),
                 "--folding", str(tmp_path / "f.json")])
    assert code == 2


def test_op_without_an_engine_is_named(tmp_path):
    """The IR allows a channel slice inside a branch; the hardware op table has no engine for
    it: `lcp compile` says so in one line naming the layer (exit 2) while the golden reference
    runs it."""
    from lcp import save
    from lcp.golden import Golden
    from lcp.sw.cli import main
    b = Builder((4, 6, 6), seed=1)
    x = b.conv("input", 4, 3, pad=1)
    x = b._add("b0", "slice", [x], {"start": 1, "stop": 3})
    x = b.threshold(x)
    m = b.model()
    Golden(m).run_int(np.zeros((1, 4, 6, 6), np.int64))
    with pytest.raises(IRError, match=r"layer '.*slice.*': the hardware generator has no engine "
                                      r"for op 'slice'"):
        generate(m, tmp_path / "b")
    save(m, tmp_path / "m")
    assert main(["compile", str(tmp_path / "m.json"), "-o", str(tmp_path / "b2")]) == 2
