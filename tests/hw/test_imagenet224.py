"""The 224x224 section (lcp.benchmarks.imagenet224): a row goes through the real `lcp compile
--budget` and reports the chosen engine's cycle model; the markdown shows it."""

import json

from lcp.benchmarks import imagenet224 as im
from lcp.hw.base import DEVICES, Resources
from lcp.hw.build import model_macs
from lcp.hw.reuse import choose_reused
from lcp.ir import save

from tests.hw.test_reuse_actdram import _mobile_res


def test_row_compiles_through_the_command_line_and_renders(tmp_path, monkeypatch):
    m = _mobile_res(hw=64)
    save(m, tmp_path / "m")
    tiny = Resources(lut=53200, ff=106400, dsp=220, bram=3)     # feature maps do not fit
    monkeypatch.setitem(DEVICES, "tiny", tiny)
    monkeypatch.setattr(im, "BUDGET", "tiny")
    monkeypatch.setattr(im, "_onnx", lambda source, name, split: tmp_path / "m.json")
    rows = [("small MobileNet/ResNet-like", "zoo", "small", 1, [])]
    data = im.run_rows(tmp_path / "results", tmp_path / "builds", out=lambda s: None, rows=rows)
    r = data["rows"]["small MobileNet/ResNet-like"]
    want = choose_reused(m, tiny, scope="core")
    assert (r["engine"], r["activations"], r["generator"]) == ("reused", "dram", False)
    assert (r["pe"], r["simd"], r["cycles"]) == (want.pe, want.simd, want.latency)
    assert r["ms"] == round(want.latency / 100_000, 2)
    assert r["macs"] == model_macs(m, "core", 0)
    assert r["command"] == "lcp compile m.json -o small_split1 --budget tiny"
    rep = json.loads((tmp_path / "builds" / "small_split1" / "report.json").read_text())
    assert rep["latency"] == r["cycles"]
    md = im.markdown(tmp_path / "results")
    assert f"| {r['cycles']:,} |" in md and f"reused {want.pe}x{want.simd}" in md
    assert "weights and activations from DRAM" in md
