"""Every zoo model at split 1/2/4/8 through ``--backend sim`` (the LCP core in Verilator) equals
the golden reference bit for bit (slow: one Verilator build per model).

Random weights (torch seed 0), activation scales calibrated on random images, 4-bit weights and
activations; the default folding (XC7Z020 budget when the model fits, else a
simulation-friendly latency target). IRs and builds are cached (:func:`lcp.benchmarks.hw.zoo_model`,
:func:`lcp.hw.build.cached_build`).
"""

import numpy as np
import pytest

from lcp.benchmarks.hw import zoo_model
from lcp.golden import Golden
from lcp.hw.chooser import choose
from lcp.hw.sim import SimExecutor

ARCHS = ["lenet5", "lenet_fc", "cifarnet", "vgg_s", "alexnet", "resnet18"]
SPLITS = [1, 2, 4, 8]
#: CIFAR-sized split1/split2 models take long to export, build and simulate: one image each.
BIG = {"vgg_s", "alexnet", "resnet18"}


@pytest.mark.slow
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("arch", ARCHS)
def test_zoo_sim_equals_golden(arch, split):
    m = zoo_model(arch, split)
    n = 1 if arch in BIG and split <= 2 else 3
    xq = np.random.default_rng(split).integers(0, 256, size=(n, *m.input.shape))
    with SimExecutor(m) as ex:          # checks against golden and names the layer otherwise
        y = ex.run_int(xq)
    np.testing.assert_array_equal(y, Golden(m).run_int(xq))


@pytest.mark.slow
def test_mobilenet_split4_sim_equals_golden():
    """MobileNet-v1 at 32x32, split 4 (13 depthwise layers per branch, their windows streamed in
    channel groups): the LCP core in Verilator == golden on 2 images, with the latency and
    interval of the cycle model. The folding is the
    chooser's for a 2 M-cycle target (about 0.5 M cycles per image, PE x SIMD up to 16): the
    XC7Z020-budget folding makes 778k lines of Verilog, over an hour of Verilator build here."""
    m = zoo_model("mobilenet_v1", 4)
    xq = np.random.default_rng(4).integers(0, 256, size=(2, *m.input.shape))
    with SimExecutor(m, target=2_000_000) as ex:    # checks against golden, names the layer
        y = ex.run_int(xq)
        res = ex.last_result
    want = Golden(m).run_int(xq)
    np.testing.assert_array_equal(y, want)
    assert len(np.unique(want)) > 1, "degenerate outputs: the comparison would prove nothing"
    model = choose(m, target=2_000_000, scope="core")
    assert (res.latency, res.interval) == (model.latency, model.interval)
