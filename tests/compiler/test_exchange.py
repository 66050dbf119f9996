"""Branches that exchange tensors before the merge (the separable-network family between LCP and
model parallelism): the front end finds each branch from the model's partition metadata, the IR
records the exchanged tensors, golden == the float64 qonnx oracle, and the traffic counter
counts every exchanged tensor once per receiving branch."""

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from lcp import compile_onnx
from lcp.counters import count
from lcp.frontend import PARTITION_KEY
from lcp.golden import Golden
from lcp.oracle import QonnxExecutor

from tests.compiler.nets import _value, conv, export, input_quant, inputs, linear, randomize, relu


class ExchangeNet(nn.Module):
    """S branches; after their first conv each sends ``k`` channels (a 2-bit quantizer on what is
    sent; ``k=None``: every channel, as model parallelism does) to every other branch, which
    concatenates them to its own and requantizes."""

    def __init__(self, S=2, k=2, width=4):
        super().__init__()
        self.S, self.k = S, k
        kk = width if k is None else k
        self.inp = input_quant(False)
        self.branches = nn.ModuleList([nn.ModuleDict({
            "c0": conv(1, width, 3, pad=1), "r0": relu(4), "ex": relu(2),
            "rq": relu(4), "c1": conv(width + (S - 1) * kk, width, 3, pad=1, stride=2),
            "r1": relu(4), "fc": linear(width * 16, 6)}) for _ in range(S)])
        self.out_act = relu(4)
        self.merge = linear(6 * S, 5)

    def forward(self, x):
        x = self.inp(x)
        ys = [b["r0"](b["c0"](x)) for b in self.branches]
        sent = [b["ex"](y.value if self.k is None else y.value[:, :self.k])
                for b, y in zip(self.branches, ys)]
        feats = []
        for i, b in enumerate(self.branches):
            z = torch.cat([ys[i].value] + [sent[j].value for j in range(self.S) if j != i], 1)
            z = b["r1"](b["c1"](b["rq"](z)))
            feats.append(self.out_act(b["fc"](torch.flatten(z, 1))))
        return _value(self.merge(torch.cat(feats, 1)))


def export_exchange(net, path):
    export(net, (1, 8, 8), path)
    proto = onnx.load(str(path))
    part = {n: int(n.split(".")[1]) for n, _ in net.named_parameters()
            if n.startswith("branches.") and n.endswith("weight")}
    proto.metadata_props.add(key=PARTITION_KEY, value=json.dumps({"weights": part}))
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("S,k", [(2, 2), (4, 1), (2, None)])
def test_exchange_golden_equals_oracle(tmp_path, S, k):
    torch.manual_seed(S)
    net = randomize(ExchangeNet(S, k), S)
    net.train()
    with torch.no_grad():
        net(torch.rand(16, 1, 8, 8))
    net.eval()
    path = export_exchange(net, tmp_path / "m.onnx")
    model = compile_onnx(path)
    assert len(model.branches) == S
    ex = model.exchanges
    assert len(ex) == S * (S - 1) and {(a, b) for _, a, b in ex} == \
        {(a, b) for a in range(S) for b in range(S) if a != b}
    for t, a, b in ex:
        spec = model.tensors[t]
        assert spec.bits <= 2                      # what crosses is the 2-bit exchange tensor
        assert spec.shape[0] == (4 if k is None else k)
    x = inputs((1, 8, 8), 24)
    xq = model.input.quantize(x)
    yq = Golden(model).run_int(xq)
    np.testing.assert_array_equal(yq, QonnxExecutor(model, source=path).run_int(xq))
    assert len(np.unique(yq)) > 1
    c = count(model)
    plain = model.tensors["input"].nbytes * S + sum(model.tensors[b.output].nbytes
                                                   for b in model.branches)
    assert c.traffic_bytes == plain + sum(model.tensors[t].nbytes for t, _, _ in ex)


def test_exchange_without_partition_is_one_branch(tmp_path):
    """Without the partition metadata the branches cannot be told apart: one branch, exact."""
    net = randomize(ExchangeNet(2, 2), 1)
    path = export(net, (1, 8, 8), tmp_path / "m.onnx")
    model = compile_onnx(path)
    assert len(model.branches) == 1 and not model.exchanges
    x = inputs((1, 8, 8), 8)
    np.testing.assert_array_equal(Golden(model).run_int(model.input.quantize(x)),
                                  QonnxExecutor(model, source=path).run_int(
                                      model.input.quantize(x)))
