"""Counters against hand-derivable figures of small networks."""

import numpy as np
import pytest
import torch.nn as nn

from lcp import compile_onnx
from lcp.counters import count
from tests.compiler.nets import Branches, Seq, conv, export, linear, randomize, relu


def test_seq_counts(tmp_path):
    # conv 1->4 3x3 pad 1 on 8x8 (bias), relu 4 bit, maxpool 2, flatten 64, linear 64->3
    net = Seq([conv(1, 4, 3, pad=1, wbits=4), relu(4), nn.MaxPool2d(2), nn.Flatten(),
               linear(64, 3, wbits=6)])
    m = compile_onnx(export(randomize(net, 0), (1, 8, 8), tmp_path / "s.onnx"))
    c = count(m)
    assert c.params == 4 * 9 + 4 + 64 * 3 + 3
    assert c.macs == 4 * 64 * 9 + 64 * 3
    assert c.input_bytes == 64                     # 8-bit input, 64 pixels
    wbytes = (36 * 4 + 7) // 8 + (192 * 6 + 7) // 8
    assert wbytes < c.param_bytes <= wbytes + (4 + 3) * 4
    conv_out = next(t for n, t in m.tensors.items() if n.endswith("conv0"))
    # live together: input + conv accumulator, then accumulator + 4-bit thresholded output
    assert c.graphs[0].peak_activation_bytes == max(64 + conv_out.nbytes,
                                                    conv_out.nbytes + 4 * 64 * 4 // 8)
    assert c.traffic_bytes == 64 + (64 * 4 + 7) // 8       # one branch: input + 4-bit features


@pytest.mark.parametrize("B", [2, 4])
def test_branch_traffic(tmp_path, B):
    m = compile_onnx(export(randomize(Branches(B), 0), (1, 8, 8), tmp_path / "b.onnx"))
    c = count(m)
    # input to every branch (8 bit, 64 pixels) + 6 features of 4 bit from every branch
    assert c.traffic_bytes == B * 64 + B * 3
    assert c.branches == B and len(c.graphs) == B + 1
    assert c.macs == sum(g.macs for g in c.graphs)
    assert c.peak_activation_bytes_single >= c.peak_activation_bytes
