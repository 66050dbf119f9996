"""The REPRODUCTION.md section of the simulator: rendered from the results JSON files the
commands write (the repository's own results), and a clear note where one is missing."""

import json
import shutil
from pathlib import Path

from lcp.sw.cluster.simreport import markdown
from lcp.benchmarks.reproduce import SECTIONS

RESULTS = Path(__file__).resolve().parents[3] / "results"


def test_section_is_listed_and_names_the_commands_when_nothing_was_produced(tmp_path):
    assert ("lcp.sw.cluster.simreport:markdown" in [t for _, t in SECTIONS])
    text = markdown(tmp_path)
    for cmd in ("lcp cluster calibrate", "lcp cluster paper", "lcp cluster emulate-replan"):
        assert f"Not produced yet: run `{cmd}" in text


def test_section_renders_the_results(tmp_path):
    (tmp_path / "cluster").mkdir()
    for name in ("paper_rpi.json", "replan.json", "sim_check.json"):
        if (RESULTS / "cluster" / name).is_file():
            shutil.copy(RESULTS / "cluster" / name, tmp_path / "cluster" / name)
    text = markdown(tmp_path)
    paper = json.loads((tmp_path / "cluster" / "paper_rpi.json").read_text())
    alex = paper["models"]["alexnet"]
    # the paper's figures and our predictions side by side
    assert "| alexnet | lcp-split8 (8 device(s)) | 115 | 24.4x |" in text
    assert f"{alex['lcp-split8']['float32']['latency_ms']:,.0f}" in text
    replan = json.loads((tmp_path / "cluster" / "replan.json").read_text())
    assert f"Plan before: {replan['plan_before']}; after: {replan['plan_after']}." in text
    assert f"{replan['requests']} requests, {replan['unique_answers']} distinct answers" in text
