"""The benchmark's REPRODUCTION.md section renders its JSON (no simulation here)."""

import json

from lcp.benchmarks.hw import BENCH_FILE, markdown


def test_markdown_from_results(tmp_path):
    assert "make bench" in markdown(tmp_path)
    row = {"model": "cifarnet_split8_w4a4 branch0", "weights": "random",
           "folding_goal": "xc7z020", "latency_cycles_sim": 1316, "latency_cycles_model": 1316,
           "interval_cycles_sim": 1156, "interval_cycles_model": 1156, "bit_exact": True,
           "sim_images_per_second": 12.3,
           "resources_estimate": {"lut": 51952, "ff": 9512, "dsp": 220, "bram36": 3.0}}
    (tmp_path / BENCH_FILE).write_text(json.dumps({"command": "lcp hw-bench", "rows": [row]}))
    text = markdown(tmp_path)
    assert "| cifarnet_split8_w4a4 branch0 | random | xc7z020 | 1,316 |" in text
    assert "FINN estimate 26,912" in text and "13.16 us" in text


def test_markdown_puts_finn_next_to_the_peers(tmp_path):
    from lcp.benchmarks.hw import FINN
    row = {"model": "tfc_2w2a (bnn_pynq) core", "weights": "random", "folding_goal": "xc7z020",
           "latency_cycles_sim": 77, "latency_cycles_model": 77, "interval_cycles_sim": 16,
           "interval_cycles_model": 16, "bit_exact": True, "sim_images_per_second": 50.0,
           "resources_estimate": {"lut": 40000, "ff": 9000, "dsp": 0, "bram36": 3.0},
           "finn": FINN["tfc_2w2a"]}
    (tmp_path / BENCH_FILE).write_text(json.dumps({"command": "x", "rows": [row]}))
    text = markdown(tmp_path)
    assert "| tfc_2w2a (bnn_pynq) core | 77 | 16 | 40,000 | 120 / 20 / 52,980 |" in text
    assert "AUP-ZU3" in text and "different" in text
