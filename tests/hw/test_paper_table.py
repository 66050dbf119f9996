"""The paper-table section (lcp.benchmarks.paper_table): speedups and the markdown, from cells
computed by the real cycle models on a small model."""

import json
import math

from lcp.benchmarks import paper_table as pt
from lcp.hw.reuse import serve

from tests.hw.test_weightstream import _net


def _cell(model, arch, split):
    s = serve(model, "xc7z020")
    return {"arch": arch, "split": split, "widen": 0, "in_shape": [4, 8, 8], "cycles": s["latency"],
            "us_fpga": s["latency"] / 100, "us_asic": s["latency"] / 800, "serve": s}


def test_speedups_and_markdown(tmp_path):
    big, small = _net(wide=256), _net(wide=16)
    cells = {pt._key("cifarnet", 1, 0, None): _cell(big, "cifarnet", 1),
             pt._key("cifarnet", 8, 0, None): _cell(small, "cifarnet", 8)}
    data = {"cells": cells}
    sp = pt.speedups(data)
    ratio = cells[pt._key("cifarnet", 1, 0, None)]["cycles"] / \
        cells[pt._key("cifarnet", 8, 0, None)]["cycles"]
    assert math.isclose(sp["ours"]["max"], ratio) and math.isclose(sp["ours"]["geomean"], ratio)
    assert math.isclose(sp["paper"]["max"], 7.6 / 0.2)
    (tmp_path / "paper_table.json").write_text(json.dumps(data))
    md = pt.markdown(tmp_path)
    assert "7.6 ms" in md and "not run" in md and f"{ratio:.1f}x" in md
