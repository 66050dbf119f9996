"""The REPRODUCTION section of model parallelism vs LCP reads the benchmark's rows."""

import json

from lcp.sw.cluster import xreport


def _row(group, total, wrong=0):
    return {"group": group, "encoding": "packed", "wrong": wrong, "nodes_used": 4,
            "tcp_bytes_per_inference": {"total": total}}


def test_mp_vs_lcp_from_bench_rows(tmp_path):
    bench = {"families": {"lenet5": {"rows": [
        _row("model-parallel4", 10000), _row("lcp-split4", 4000),
        _row("model-parallel8", 20000), _row("lcp-split8", 2000, wrong=1),
        {**_row("lcp-split4", 1), "encoding": "float32"}, _row("exchange-split4", 5000)]}}}
    rows = xreport.mp_vs_lcp(bench)
    plain = [r for r in rows if not r.get("exchange")]
    assert [(r["split"], round(r["reduction"], 3), r["exact"]) for r in plain] == \
        [(4, 0.6, True), (8, 0.9, False)]
    (tmp_path / "cluster-mp").mkdir()
    (tmp_path / "cluster-mp" / "bench.json").write_text(json.dumps(bench))
    md = xreport.markdown(tmp_path)
    assert "| lenet5 | 4 | 10,000 | 4,000 | -60.0 % | -60 % | yes |" in md
    assert "| NO |" in md and "5,000 B/inf" in md and "Search not run yet" in md
