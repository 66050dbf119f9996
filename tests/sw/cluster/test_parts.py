"""Partitioning the IR: branches, pipeline stages and shipped parts run to the golden result."""

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.ir import IRError
from lcp.sw.cluster import parts as P

from .conftest import int_inputs


def _chain_run(stages, x):
    for p in stages:
        x = Golden(p.model).run_int(x)
    return x


@pytest.mark.parametrize("name", ["lenet5_s1", "cifarnet_s1", "residual"])
def test_stages_compose_to_golden(zoo, name):
    m = zoo[name]
    x = int_inputs(m, 3)
    ref = Golden(m).run_int(x)
    cands = P.cut_candidates(m)
    assert cands, "a single-branch model has somewhere to cut"
    for k in range(1, len(cands) + 3):
        stages = P.stage_parts(m, k)
        assert len(stages) == min(k, len(cands) + 1)
        assert [s.kind for s in stages] == ["stage"] * len(stages)
        np.testing.assert_array_equal(_chain_run(stages, x), ref)
        assert sum(s.macs for s in stages) == sum(p.macs for p in [P.whole_part(m)])


def test_cuts_only_at_low_bit_single_live_tensors(zoo):
    m = zoo["residual"]
    layers = P.chain(m)
    for i in P.cut_candidates(m):
        assert layers[i].op in ("threshold", "maxpool", "avgpool", "flatten", "relu")
    # inside the residual block two tensors are live: no cut between the block's convs and add
    add = next(i for i, l in enumerate(layers) if l.op == "add")
    first_conv_of_block = next(i for i, l in enumerate(layers) if l.op == "conv" and i > 0
                               and i < add and layers[i].inputs[0] != m.input.name)
    assert not any(first_conv_of_block <= c < add for c in P.cut_candidates(m))


def test_balanced_cuts_minimize_the_largest_stage(zoo):
    m = zoo["cifarnet_s1"]
    cands = P.cut_candidates(m)
    best = max(s.macs for s in P.stage_parts(m, 2))
    for c in cands:
        assert max(s.macs for s in P.stage_parts(m, [c])) >= best


def test_bad_cut_and_multi_branch_pipeline_raise(zoo):
    m = zoo["lenet5_s1"]
    with pytest.raises(IRError, match="cannot cut"):
        P.stage_parts(m, [0])           # after conv: an accumulator, not an activation
    with pytest.raises(IRError, match="single-branch"):
        P.stage_parts(zoo["lenet5_s4"], 2)


@pytest.mark.parametrize("name", ["lenet5_s4", "cifarnet_s8", "lenet_fc_s2"])
def test_branch_parts_and_merge_equal_golden(zoo, name):
    m = zoo[name]
    x = int_inputs(m, 4)
    bp = P.branch_parts(m)
    assert len(bp) == len(m.branches)
    outs = [Golden(p.model).run_int(x) for p in bp]
    np.testing.assert_array_equal(Golden(m).run_merge(outs), Golden(m).run_int(x))


def test_parts_ship_as_ir_bytes_with_digest_check(zoo):
    p = P.branch_parts(zoo["lenet5_s4"])[1]
    msg = P.part_to_wire(p)
    assert isinstance(msg["doc"], str) and isinstance(msg["npz"], bytes)
    m2 = P.part_from_wire(msg)
    assert m2.digest().startswith(p.key)
    other = P.part_to_wire(P.branch_parts(zoo["lenet5_s4"])[2])
    with pytest.raises(IRError, match="digest"):
        P.part_from_wire(dict(msg, npz=other["npz"], doc=other["doc"]))
    with pytest.raises(IRError):
        P.part_from_wire(dict(msg, npz=b"not an npz"))
