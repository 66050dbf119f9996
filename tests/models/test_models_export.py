"""QONNX export: every arch obeys the export contract, and the exported graph computes the model."""

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import brevitas.nn as qnn
from brevitas.export import export_qonnx as brevitas_export

from lcp.models import LCPNet, build, calibrate, check_export_contract, example_input
from lcp.models import export_qonnx
from lcp.models.common import input_quant, quant_conv2d, quant_linear, quant_relu


def _calibrated(arch, split, **kw):
    torch.manual_seed(0)
    m = build(arch, split=split, **kw)
    return calibrate(m, [example_input(m.in_shape, 8, seed=s) for s in range(2)])


def _run_onnx(path, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    mw = cleanup_model(ModelWrapper(str(path)))   # the graph was exported for batch 1
    name_in, name_out = mw.graph.input[0].name, mw.graph.output[0].name
    return np.concatenate([execute_onnx(mw, {name_in: x[i:i + 1].numpy()})[name_out]
                           for i in range(len(x))])


_slow = pytest.mark.slow


# the large random-weight nets are exported at split 2 (export time grows with the node count);
# the ImageNet-sized ones (split 1, the published configuration) take minutes: -m slow
@pytest.mark.parametrize("arch,split", [
    ("lenet5", 1), ("lenet5", 4), ("lenet_fc", 8), ("cifarnet", 8), ("vgg_s", 2), ("alexnet", 2),
    ("resnet18", 2), ("vgg16", 2), ("mobilenet_v1", 2), pytest.param("resnet50", 2, marks=_slow),
    pytest.param("resnet18_imagenet", 1, marks=_slow),
    pytest.param("resnet50_imagenet", 1, marks=_slow),
    pytest.param("mobilenet_v1_imagenet", 1, marks=_slow),
    pytest.param("vgg16_imagenet", 1, marks=_slow)])
def test_export_obeys_contract(tmp_path, arch, split):
    m = _calibrated(arch, split)
    path = export_qonnx(m, tmp_path / "m.onnx")
    assert path.is_file() and not (tmp_path / "m.onnx.data").exists()
    assert check_export_contract(path, split=split) == []
    raw = onnx.load(str(path))
    ops = [n.op_type for n in raw.graph.node]
    assert ops[0] == "Quant" and raw.graph.node[0].input[0] == raw.graph.input[0].name
    assert ops.count("Concat") == (split > 1)
    assert (ops.count("Add") > 0) == arch.startswith("resnet")
    assert ops.count("MaxPool") == sum(isinstance(mod, nn.MaxPool2d) for mod in m.modules())
    # depthwise convs are exported as Conv with group = channels and one input channel each
    depthwise = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d) and mod.groups > 1]
    assert len(depthwise) == (13 * split if arch.startswith("mobilenet") else 0)
    inits = {i.name: i for i in raw.graph.initializer}
    producer = {o: n for n in raw.graph.node for o in n.output}
    groups = []
    for n in raw.graph.node:
        if n.op_type != "Conv":
            continue
        g = next((a.i for a in n.attribute if a.name == "group"), 1)
        w = producer[n.input[1]].input[0]             # Quant(weight initializer)
        shape = tuple(inits[w].dims)
        if g > 1:
            assert shape[0] == g and shape[1] == 1, (n.name, g, shape)
            groups.append(g)
    assert sorted(groups) == sorted(mod.groups for mod in depthwise)
    assert m.eval().training is False


@pytest.mark.parametrize("arch,split", [
    ("lenet5", 4), ("lenet_fc", 2),
    pytest.param("resnet18", 2, marks=pytest.mark.slow),   # qonnx cleanup: minutes on a ResNet
    pytest.param("mobilenet_v1", 2, marks=pytest.mark.slow),
    pytest.param("resnet50", 1, marks=pytest.mark.slow),
])
def test_exported_graph_computes_the_model(tmp_path, arch, split):
    small = arch.startswith(("resnet", "mobilenet"))
    m = _calibrated(arch, split, in_shape=(3, 16, 16) if small else None)
    path = export_qonnx(m, tmp_path / "m.onnx")
    x = example_input(m.in_shape, 3, seed=11)
    with torch.no_grad():
        want = m(x).numpy()
    got = _run_onnx(path, x)
    # one output LSB of the merge (Int32 accumulator times scales) is far below this tolerance
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_dynamo_export_writes_data_file_and_obeys_contract(tmp_path):
    m = _calibrated("lenet5", 2)
    path = export_qonnx(m, tmp_path / "d.onnx", dynamo=True)
    assert path.is_file() and (tmp_path / "d.onnx.data").is_file()
    assert check_export_contract(path, split=2) == []
    x = example_input(m.in_shape, 2, seed=3)
    with torch.no_grad():
        want = m(x).numpy()
    np.testing.assert_allclose(_run_onnx(path, x), want, rtol=1e-4, atol=1e-4 * abs(want).max())


def test_export_restores_training_mode(tmp_path):
    m = _calibrated("lenet_fc", 2).train()
    export_qonnx(m, tmp_path / "a.onnx")
    assert m.training


# --- the checker must reject graphs that break the contract -------------------------------------

class _UnsharedNet(LCPNet):
    """Each branch output gets its own quantizer: concat operands with different scales (Brevitas
    refuses to concatenate such QuantTensors, so they are concatenated as floats and the merge
    has no Int32 bias)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.own_acts = nn.ModuleList(qnn.QuantReLU(bit_width=4) for _ in self.branches)
        self.merge = qnn.QuantLinear(self.merge.in_features, self.num_classes, bias=False)

    def branch_forward(self, i, xq):
        return self.own_acts[i](self.branches[i](xq))


def _tiny(cls=LCPNet, branches=None, split=2, pre=None):
    def branch():
        return nn.Sequential(nn.Flatten(), quant_linear(16, 6, weight_bits=4), quant_relu(4),
                             quant_linear(6, 3, weight_bits=4))
    cfg = dict(arch="tiny", split=split, widen=0, weight_bits=4, act_bits=4, per_channel=False,
               num_classes=4, in_shape=(1, 4, 4), branch_widths=[6, 3])
    m = cls(input_quant=input_quant(), branches=branches or [branch() for _ in range(split)],
            branch_act=quant_relu(4), merge=quant_linear(3 * split, 4, weight_bits=4), config=cfg)
    if pre is not None:
        m.input_quant = nn.Sequential(pre, m.input_quant)
    return m


class _Double(nn.Module):
    def forward(self, x):
        return x * 2.0


def _violations(tmp_path, m, split=2):
    torch.manual_seed(0)
    m.train()
    with torch.no_grad():
        for s in range(3):
            m(example_input(m.in_shape, 8, seed=s) * (1 + s))
    return check_export_contract(export_qonnx(m.eval(), tmp_path / "bad.onnx"), split=split)


def test_checker_accepts_the_tiny_reference(tmp_path):
    assert _violations(tmp_path, _tiny()) == []


def test_checker_rejects_unshared_branch_quantizers(tmp_path):
    bad = _violations(tmp_path, _tiny(_UnsharedNet))
    assert any("branch outputs: operands have different scale" in b for b in bad), bad


def test_checker_rejects_float_ops_before_the_input_quantizer(tmp_path):
    bad = _violations(tmp_path, _tiny(pre=_Double()))
    assert any("first node is Mul" in b for b in bad), bad
    assert any("op Mul" in b for b in bad), bad


def test_checker_rejects_conv_without_activation_quantizer(tmp_path):
    def branch():
        return nn.Sequential(quant_conv2d(1, 2, 3, padding=1, weight_bits=4),
                             qnn.QuantConv2d(2, 2, 3, padding=1, bias=False),
                             nn.Flatten(), quant_relu(4), quant_linear(32, 3, weight_bits=4))
    bad = _violations(tmp_path, _tiny(branches=[branch(), branch()]))
    assert any("Conv" in b and "not a quantized activation" in b for b in bad), bad


def test_checker_counts_branches(tmp_path):
    m = _tiny()
    assert any("expected split=4" in b for b in _violations(tmp_path, m, split=4))


def test_export_without_graph_lint_is_the_same_file(tmp_path, monkeypatch):
    """export_qonnx skips TorchScript's graph lint (a check, quadratic on deep split models): the
    file must be byte for byte the export with the lint, and the lint must be back afterwards."""
    net = _calibrated("lenet5", 4).eval()
    x = example_input(net.in_shape)
    lint = torch._C._jit_pass_lint
    calls = []

    def counted(graph):
        calls.append(1)
        lint(graph)
    monkeypatch.setattr(torch._C, "_jit_pass_lint", counted)
    brevitas_export(net, x, export_path=str(tmp_path / "with_lint.onnx"), dynamo=False)
    assert calls, "the reference export must run the lint it is compared against"
    n = len(calls)
    export_qonnx(net, tmp_path / "without.onnx", example=x)
    assert len(calls) == n and torch._C._jit_pass_lint is counted
    assert ((tmp_path / "with_lint.onnx").read_bytes()
            == (tmp_path / "without.onnx").read_bytes())
