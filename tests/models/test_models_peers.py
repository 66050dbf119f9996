"""The peer zoos (Brevitas' example networks): built with random weights, calibrated, exported to
QONNX, and the exported graph run by qonnx's executor equals the Brevitas forward.

qonnx's executor runs standard ops through onnxruntime in float32, Brevitas in PyTorch float32:
the same arithmetic in another order. Where a quantizer input lies within float32 rounding of a
rounding tie (or of the sign threshold of a binary quantizer), the two can land one step apart
and the step propagates. So an image whose outputs differ must show such a near-tie in the
oracle's trace; every other image must agree within float32 tolerance, and at least one image per
network must agree outright.
"""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import brevitas
import brevitas.nn as qnn

from lcp.models import peers
from lcp.models.peers import PEERS, build_peer, export_peer, peer_input, peer_spec

#: networks whose export and oracle run take more than a few seconds
SLOW = {"resnet18_4w4a", "quant_mobilenet_v1_4b"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("peers")


def _oracle_trace(path, x):
    """qonnx's executor on each image of ``x``: (outputs, full execution contexts, graph)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    mw = cleanup_model(ModelWrapper(str(path)))       # exported for batch 1
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    ctxs = [execute_onnx(mw, {iname: x[i:i + 1]}, return_full_exec_context=True)
            for i in range(len(x))]
    return np.concatenate([c[oname] for c in ctxs]), ctxs, mw


def _near_tie(mw, ctx, rel=1e-5) -> bool:
    """Does any activation quantizer input lie within ``rel`` (relative) of a rounding tie
    (``Quant``) or of zero (``BipolarQuant``)?"""
    for n in mw.graph.node:
        if n.op_type not in ("Quant", "BipolarQuant") or mw.get_initializer(n.input[0]) is not None:
            continue
        x = ctx[n.input[0]].astype(np.float64)
        if n.op_type == "BipolarQuant":
            r, dist = x, np.abs(x)
        else:
            r = x / ctx[n.input[1]].astype(np.float64) + ctx[n.input[2]].astype(np.float64)
            dist = np.abs(np.abs(r - np.floor(r)) - 0.5)
        if np.any(dist <= rel * np.maximum(1.0, np.abs(r))):
            return True
    return False


def test_peer_list():
    assert len(PEERS) == 14 and len(set(PEERS)) == 14
    for arch in ("tfc", "sfc", "lfc", "cnv"):
        assert {f"{arch}_{b}" for b in ("1w1a", "1w2a", "2w2a")} <= set(PEERS)
    assert {"resnet18_4w4a", "quant_mobilenet_v1_4b"} <= set(PEERS)
    assert [n for n in PEERS if not peer_spec(n).shipped] == ["lfc_2w2a"]
    assert {n for n in PEERS if peer_spec(n).float_input} == {"resnet18_4w4a",
                                                              "quant_mobilenet_v1_4b"}
    with pytest.raises(ValueError, match="unknown peer network 'cnv_4w4a'"):
        build_peer("cnv_4w4a")


def test_peer_inputs_are_images_on_the_byte_grid():
    x = peer_input("tfc_1w1a", 5, seed=3)
    assert tuple(x.shape) == (5, 1, 28, 28) and x.dtype == torch.float32
    k = x.numpy() * 255
    assert np.allclose(k, np.round(k), atol=1e-4) and k.min() >= 0 and k.max() <= 255
    assert (x == 0).float().mean() > 0.5            # MNIST digits: mostly background
    assert torch.equal(x, peer_input("tfc_1w1a", 5, seed=3))
    y = peer_input("quant_mobilenet_v1_4b", 2, seed=1)
    assert tuple(y.shape) == (2, 3, 224, 224) and 0.4 < y.mean() < 0.6


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n in SLOW else ())
                                  for n in PEERS])
def test_export_runs_like_brevitas(cache, name):
    path = export_peer(name, cache)
    model = build_peer(name)
    x = peer_input(name, 3, seed=77)
    with torch.no_grad():
        want = model(x)
    want = getattr(want, "value", want).numpy()
    got, ctxs, mw = _oracle_trace(path, x.numpy())
    assert got.shape == want.shape == (3, 10 if peer_spec(name).dataset != "imagenet" else 1000)
    assert np.ptp(want) > 0.1, "degenerate outputs: the comparison would prove nothing"
    tol = 1e-5 * np.abs(want).max()
    agree = [np.allclose(g, w, rtol=1e-5, atol=tol) for g, w in zip(got, want)]
    for i, ok in enumerate(agree):
        assert ok or _near_tie(mw, ctxs[i]), \
            f"image {i}: max |diff| {np.abs(got[i] - want[i]).max():.3g} with no near-tie"
    assert any(agree)


@pytest.mark.parametrize("name", ["tfc_1w1a", "tfc_2w2a", "cnv_1w2a",
                                  pytest.param("resnet18_4w4a", marks=pytest.mark.slow)])
def test_calibration_moves_every_statistic_off_its_default(name):
    torch.manual_seed(0)
    fresh = peers._construct(peer_spec(name))
    model = build_peer(name)
    assert not model.training
    norms = [m for m in model.modules() if peers._is_norm(m)]
    assert norms
    for m in norms:
        assert not torch.all(m.running_mean == 0) and not torch.all(m.running_var == 1)
    # activation scales: statistics-based ones (resnet18_4w4a) all moved, bnn_pynq's constant
    # ones ([-1, 1] by design) did not
    fresh.eval()
    acts = [(n, a, b) for (n, a), (_, b) in zip(model.named_modules(), fresh.named_modules())
            if isinstance(a, (qnn.QuantReLU, qnn.QuantIdentity))]
    assert acts
    with torch.no_grad():
        moved = [n for n, a, b in acts
                 if not torch.allclose(a.act_quant.scale(), b.act_quant.scale())]
    assert moved == ([n for n, _, _ in acts] if name == "resnet18_4w4a" else [])


def test_export_cache_is_keyed_by_name_seed_and_version(cache):
    p0 = export_peer("tfc_1w1a", cache)
    assert p0.name == f"tfc_1w1a_seed0_brevitas-{brevitas.__version__}.onnx"
    meta = json.loads(p0.with_suffix(".json").read_text())
    assert (meta["name"], meta["seed"], meta["brevitas"]) == ("tfc_1w1a", 0, brevitas.__version__)
    stamp = p0.stat().st_mtime_ns
    assert export_peer("tfc_1w1a", cache) == p0 and p0.stat().st_mtime_ns == stamp   # reused
    p1 = export_peer("tfc_1w1a", cache, seed=1)
    assert p1 != p0

    def weights(p):
        return [onnx.numpy_helper.to_array(i) for i in onnx.load(str(p)).graph.initializer]
    assert any(a.shape != b.shape or not np.array_equal(a, b)
               for a, b in zip(weights(p0), weights(p1)))
    assert export_peer("tfc_1w1a", cache, force=True).stat().st_mtime_ns != stamp
    with pytest.raises(ValueError, match="not a folder"):
        export_peer("tfc_1w1a", p0)


def test_build_is_deterministic():
    a, b = build_peer("sfc_1w2a", seed=4), build_peer("sfc_1w2a", seed=4)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert isinstance(a.features[0], nn.Module)


def test_command_writes_the_file(tmp_path, capsys):
    out = tmp_path / "sub" / "tfc.onnx"
    assert peers.main(["tfc_2w2a", "-o", str(out), "--seed", "2"]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"Quant", "MatMul", "BatchNormalization"} <= ops


@pytest.mark.parametrize("argv,msg", [
    (["nope", "-o", "x.onnx"], "unknown peer network 'nope'"),
    (["tfc_1w1a"], "-o FILE"),
])
def test_command_rejects_bad_arguments(tmp_path, capsys, argv, msg):
    assert peers.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert peers.main(["tfc_1w1a", "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.slow      # a fresh interpreter importing torch and brevitas
def test_module_entry_point_lists_the_peers():
    r = subprocess.run([sys.executable, "-m", "lcp.models.peers", "--list"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert names == list(PEERS)
    assert "derived" in next(line for line in r.stdout.splitlines() if line.startswith("lfc_2w2a"))
