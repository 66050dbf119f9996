"""FINN's own networks (Brevitas' ``bnn_pynq`` TFC/SFC/LFC at 1w1a, 1w2a, 2w2a and CNV at 1w1a,
1w2a, 2w2a; random weights, :mod:`lcp.models.peers`) through ``--backend sim``: the LCP core in
Verilator equals the golden reference bit for bit (slow: one Verilator build per network; the
default folding, the XC7Z020 budget)."""

import numpy as np
import pytest

from lcp import compile_onnx
from lcp.golden import Golden
from lcp.hw.sim import SimExecutor
from lcp.models.peers import export_peer, peer_input

pytestmark = pytest.mark.slow

BNN_PYNQ = [f"{a}_{b}" for a in ("tfc", "sfc", "lfc", "cnv") for b in ("1w1a", "1w2a", "2w2a")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("peers")


@pytest.mark.parametrize("name", BNN_PYNQ)
def test_bnn_pynq_sim_equals_golden(cache, name):
    model = compile_onnx(export_peer(name, cache))
    xq = model.input.quantize(peer_input(name, 3, seed=0).numpy())
    with SimExecutor(model) as ex:       # checks against golden and names the layer otherwise
        y = ex.run_int(xq)
    want = Golden(model).run_int(xq)
    np.testing.assert_array_equal(y, want)
    assert len(np.unique(want)) > 1, "degenerate outputs: the comparison would prove nothing"
