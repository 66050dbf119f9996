"""IR serialization: JSON + npz round trip, version and file checks, validation."""

import json

import numpy as np
import pytest
import torch.nn as nn

from lcp import compile_onnx, ir
from lcp.golden import Golden
from tests.compiler.nets import Branches, Residual, export, inputs, randomize


@pytest.fixture(scope="module", params=["branches", "residual"])
def model(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("ir")
    net = Branches(3) if request.param == "branches" else Residual()
    return compile_onnx(export(randomize(net, 5), (1, 8, 8), d / "m.onnx"))


def test_round_trip_is_identical(model, tmp_path):
    j, n = ir.save(model, tmp_path / "model")
    back = ir.load(j)
    assert back.digest() == model.digest()
    assert json.loads(j.read_text())["version"] == ir.IR_VERSION
    for a, b in zip(model.layers(), back.layers()):
        assert (a.name, a.op, a.inputs, a.output) == (b.name, b.op, b.inputs, b.output)
        assert a.attrs == b.attrs
        assert a.params.keys() == b.params.keys()
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])
    assert back.tensors == model.tensors
    x = inputs((1, 8, 8), 8)
    np.testing.assert_array_equal(Golden(back).run(x), Golden(model).run(x))


def test_digest_sees_every_weight(model):
    d = model.digest()
    layer = next(l for l in model.layers() if "weight" in l.params)
    layer.params["weight"][0].flat[0] += 1
    try:
        assert model.digest() != d
    finally:
        layer.params["weight"][0].flat[0] -= 1


def test_npz_is_read_without_pickle(model, tmp_path):
    j, n = ir.save(model, tmp_path / "m")
    arrays = dict(np.load(n))
    key = next(iter(arrays))
    arrays[key] = np.array([object()], dtype=object)
    np.savez(n, **arrays)
    with pytest.raises(ir.IRError, match=r"m\.npz: not a readable IR array file"):
        ir.load(j)


@pytest.mark.parametrize("edit,msg", [
    (lambda d: d.update(version=99), "IR version 99"),
    (lambda d: d.update(format="other"), "not an lcp-ir file"),
    (lambda d: d.pop("tensors"), "model: missing field or array 'tensors'"),
    (lambda d: d["tensors"]["input"].update(shape=[1, 2.5]),
     r"tensor 'input': shape \[1, 2.5\]: 2.5 is not an integer"),
    (lambda d: d["branches"][0]["layers"][0].pop("attrs"),
     "branch 0 layer '.*': missing field or array 'attrs'"),
    (lambda d: d["branches"][0]["layers"][0].update(op="gelu"), "unknown op 'gelu'"),
])
def test_bad_json(model, tmp_path, edit, msg):
    j, _ = ir.save(model, tmp_path / "m")
    doc = json.loads(j.read_text())
    edit(doc)
    j.write_text(json.dumps(doc))
    with pytest.raises(ir.IRError, match=msg):
        ir.load(j)


def test_not_json(tmp_path):
    (tmp_path / "m.json").write_text("{ nope")
    with pytest.raises(ir.IRError, match=r"m\.json: not a readable IR JSON file"):
        ir.load(tmp_path / "m.json")


def test_validate_catches_a_wrong_shape(model):
    name = model.branches[0].layers[0].output
    old = model.tensors[name]
    model.tensors[name] = ir.TensorSpec((old.shape[0] + 1,) + old.shape[1:], old.lo, old.hi)
    try:
        with pytest.raises(ir.IRError, match="output shape"):
            model.validate()
    finally:
        model.tensors[name] = old


def test_bits_for_range():
    assert ir.bits_for_range(0, 15) == (4, False)
    assert ir.bits_for_range(-8, 7) == (4, True)
    assert ir.bits_for_range(-9, 7) == (5, True)
    assert ir.bits_for_range(0, 0) == (1, False)
    assert ir.int_range(4, True, narrow=True) == (-7, 7)
