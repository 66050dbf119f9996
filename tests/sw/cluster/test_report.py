"""The cluster report: each group at its cheapest exact encoding, LCP against every baseline
at its best (generic over strategies), and text that says plainly when the target is missed."""

import json

import pytest

from lcp.sw.cluster import report as R


def _row(label, strategy, variant, encoding, total, *, group=None, max_link=None, wrong=0,
         answers=10, p50=10.0, nodes=8):
    row = {"label": label, "strategy": strategy, "variant": variant, "encoding": encoding,
           "batch": 1, "nodes_used": nodes, "answers": answers, "wrong": wrong,
           "latency_ms": {"p50": p50, "p95": 1.5 * p50, "mean": p50},
           "latency_per_image_ms": p50, "throughput_images_s": 1000.0 / p50,
           "tcp_bytes_per_inference": {"total": float(total),
                                       "max_link": float(max_link or total / 2),
                                       "links": {"dispatcher<->node00": {"a_to_b": total / 2,
                                                                         "b_to_a": 0.0}},
                                       "control": 0.0, "lost_connections": 0},
           "memory": {"node00": {"rss_mb": 80.0, "base_rss_mb": 75.0, "peak_rss_mb": 81.0,
                                 "param_bytes": 1000, "parts": ["whole0"]}},
           "plan": {}, "placement": {}}
    if group is not None:
        row["group"] = group
    return row


def _swept(group, strategy, variant, sizes, **kw):
    return [_row(f"{group}/{e}", strategy, variant, e, b, group=group, **kw)
            for e, b in sizes.items()]


def _rows(extra=()):
    rows = [_row("original@1", "single", "original", "packed", 3000, group="original@1",
                 nodes=1)]
    rows += _swept("pipeline", "pipeline", "original",
                   {"packed": 50_000, "packed-lz4": 52_000, "float32": 400_000,
                    "zfp-lz4": 260_000})
    rows += _swept("data", "data", "original",
                   {"packed": 3000, "packed-lz4": 3100, "float32": 12_000, "zfp-lz4": 11_000})
    rows += _swept("lcp-split8", "lcp", "split8",
                   {"packed": 25_000, "packed-lz4": 24_000, "float32": 99_000,
                    "zfp-lz4": 90_000})
    rows += _swept("hidp-split8", "hidp", "split8", {"packed": 20_000})
    rows += list(extra)
    return rows


def test_best_run_is_the_cheapest_exact_encoding():
    rows = _rows()
    rows[rows.index(next(r for r in rows if r["label"] == "lcp-split8/packed-lz4"))]["wrong"] = 1
    best = R.best_runs(rows)
    assert best["pipeline"]["label"] == "pipeline/packed"
    assert best["lcp-split8"]["label"] == "lcp-split8/packed"     # the cheaper one was wrong
    comp = R.comparisons(rows)
    assert comp["best"]["lcp-split8"]["by_encoding"]["packed-lz4"] is None
    assert comp["best"]["pipeline"]["by_encoding"]["zfp-lz4"] == 260_000


def test_headline_takes_every_baseline_strategy_at_its_best():
    """Baselines are the strategies serving the original model on several nodes, whatever
    their name: a model-parallel group added later joins the headline by itself; the
    single-node reference and HiDP's placement of the LCP model do not."""
    mp = _swept("model-parallel", "model-parallel", "original",
                {"packed": 100_000, "zfp-lz4": 80_000})
    head = R.comparisons(_rows(mp))["headline"]["lcp-split8"]
    assert head["label"] == "lcp-split8/packed-lz4" and head["bytes"] == 24_000
    assert set(head["vs"]) == {"pipeline", "data", "model-parallel"}
    assert head["vs"]["pipeline"]["label"] == "pipeline/packed"
    assert head["vs"]["pipeline"]["total_ratio"] == pytest.approx(50_000 / 24_000)
    assert head["vs"]["model-parallel"]["encoding"] == "zfp-lz4"
    assert head["vs"]["model-parallel"]["total_ratio"] == pytest.approx(80_000 / 24_000)
    assert not any(c["meets_target_total"] for c in head["vs"].values())


def test_headline_text_says_under_target_and_more_plainly():
    rows = _rows(_swept("model-parallel", "model-parallel", "original", {"packed": 480_000}))
    result = {"families": {"cifarnet": {"rows": rows}}}
    (line,) = R.headline_lines(result)
    assert line.startswith("- cluster, cifarnet: LCP split8")
    assert "the >= 8x target is met against model-parallel" in line
    assert "LCP's advantage is under 8x against pipeline (2.08x)" in line
    assert "LCP sends MORE bytes than data (8.00x more)" in line
    assert "data (packed, 3.0 kB) 8.00x MORE" in line


def test_rows_of_an_older_file_count_as_groups_of_one():
    rows = [_row("pipeline-defer", "pipeline", "original", "zfp-lz4", 1_095_927),
            _row("pipeline-int", "pipeline", "original", "packed", 57_732),
            _row("lcp-split8", "lcp", "split8", "packed", 26_488)]
    head = R.comparisons(rows)["headline"]["lcp-split8"]
    assert head["vs"]["pipeline"]["label"] == "pipeline-int"


def test_markdown_marks_the_cheapest_and_states_the_headline(tmp_path):
    result = {"config": {"links": None, "delay_ms": 0.0}, "workers": 8,
              "loadavg_before": [1.0], "loadavg_after": [2.0],
              "families": {"lenet5": {"notes": ["random"], "rows": _rows(),
                                      "expected_payload_bytes": {}}}}
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "bench.json").write_text(json.dumps(result))
    md = R.markdown(tmp_path, tmp_path / "runs")
    assert "| pipeline/packed | pipeline | packed | 8 |" in md
    assert [ln for ln in md.splitlines() if ln.startswith("| pipeline/packed |")][0].endswith(
        "| * |")
    assert "LCP's advantage is under 8x against pipeline" in md
    assert "pipeline (pipeline, original): packed 50000*, packed-lz4 52000" in md
    R.plots(result, tmp_path)
    assert (tmp_path / "lenet5_bytes.png").stat().st_size > 0
