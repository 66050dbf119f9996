"""The peer zoos compile: every network of Brevitas' ``bnn_pynq`` (TFC, SFC, LFC, CNV at 1 and 2
bits, ResNet-18 4w4a) and ``quant_mobilenet_v1_4b``, with random weights and calibrated scales
(:mod:`lcp.models.peers`), exported to QONNX: golden == the float64 qonnx oracle, integer for
integer, on MNIST images (the MLPs) or random images on the ``k/255`` grid. The networks whose
first layer reads the float image compile with ``input_format="uint8"``."""

import numpy as np
import pytest

from lcp import compile_onnx
from lcp.golden import Golden
from lcp.models.peers import PEERS, export_peer, peer_input, peer_spec
from lcp.oracle import QonnxExecutor

#: export and oracle take minutes (CIFAR/ImageNet-sized, deep)
SLOW = {"resnet18_4w4a", "quant_mobilenet_v1_4b", "cnv_1w1a", "cnv_1w2a", "cnv_2w2a"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("peers")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n in SLOW else ())
                                  for n in PEERS])
def test_peer_golden_equals_oracle(cache, name):
    spec = peer_spec(name)
    path = export_peer(name, cache)
    model = compile_onnx(path, input_format="uint8" if spec.float_input else None)
    n = 2 if spec.dataset == "imagenet" else 12
    x = peer_input(name, n, seed=1).numpy()
    xq = model.input.quantize(x)
    yq = Golden(model).run_int(xq)
    oq = QonnxExecutor(model, source=path).run_int(xq)
    np.testing.assert_array_equal(yq, oq)
    assert len(np.unique(yq)) > 1, "degenerate outputs: the comparison would prove nothing"
    y, o = Golden(model).run(x), QonnxExecutor(model, source=path).run(x)
    step = np.abs(model.dequant.scale).reshape((1, -1) + (1,) * (y.ndim - 2))
    assert np.all(np.abs(y - o) <= 1e-6 * step + 1e-9)
    if "1a" in name.split("_")[-1]:          # w?a1: the activations are bipolar
        acts = [model.tensors[l.output] for l in model.layers() if l.op == "threshold"]
        assert acts and all(t.bipolar for t in acts)
    if name.startswith(("tfc", "sfc", "lfc", "cnv")):   # 2*x - 1 before the input quantizer
        assert [op for op, _ in model.input.pre] == ["mul", "sub"]
