"""The float64 oracle's vectorised Conv equals onnx.reference's own Conv (the one it replaces)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from lcp.oracle_conv import conv

CASES = [  # x shape, w shape, attributes
    ((2, 4, 7, 6), (6, 4, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 6, 9, 9), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((2, 8, 8, 5), (4, 2, 2, 3), {"group": 4, "strides": [1, 2], "pads": [0, 1, 1, 0]}),
    ((1, 3, 11, 10), (5, 3, 3, 2), {"dilations": [2, 1], "pads": [2, 0, 1, 1]}),
    ((3, 5, 17), (4, 5, 5), {"pads": [2, 2], "strides": [3]}),
    ((2, 4, 12), (4, 1, 3), {"group": 4, "dilations": [2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 7, 8), (3, 2, 3, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ((1, 2, 7, 8), (3, 2, 1, 1), {"auto_pad": "VALID"}),
]


def _reference(x, w, b, attrs):
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if b is not None else []), ["y"],
                            **attrs)
    ins = [helper.make_tensor_value_info("x", TensorProto.DOUBLE, None),
           helper.make_tensor_value_info("w", TensorProto.DOUBLE, None)]
    if b is not None:
        ins.append(helper.make_tensor_value_info("b", TensorProto.DOUBLE, None))
    g = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info(
        "y", TensorProto.DOUBLE, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    feeds = {"x": x, "w": w} | ({"b": b} if b is not None else {})
    return ReferenceEvaluator(model).run(None, feeds)[0]


@pytest.mark.parametrize("xs,ws,attrs", CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_conv_equals_onnx_reference(xs, ws, attrs, bias):
    rng = np.random.default_rng(len(xs) + sum(ws))
    # quantized values times a scale, as the oracle sees them
    x = rng.integers(-8, 8, xs) * 0.0625
    w = rng.integers(-8, 8, ws) * 0.03125
    b = rng.integers(-50, 50, ws[0]) * 0.001953125 if bias else None
    ref = _reference(x, w, b, attrs)
    got = conv(x, w, b, **attrs)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)   # dyadic values: exact in any summation order
    assert np.abs(ref).max() > 0


def test_bad_group_is_refused():
    with pytest.raises(ValueError, match="group=3"):
        conv(np.zeros((1, 4, 5, 5)), np.zeros((2, 2, 3, 3)), group=3)
