"""``lcp search``: bad input is one line and exit code 2; an arch without data gives bytes and
modelled latency only."""

import json

from lcp.sw.cli import main


def test_search_bad_input(capsys):
    assert main(["search", "--arch", "nope"]) == 2
    assert "--arch 'nope'" in capsys.readouterr().err
    assert main(["search", "--bits", "2,x"]) == 2
    assert main(["search", "--split", "3"]) == 2


def test_search_without_data_counts_bytes_only(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["search", "--arch", "lenet_fc", "--dataset", "none", "--split", "2",
                 "--samples", "0", "-o", str(out)]) == 0
    r = json.loads((out / "pareto.json").read_text())
    assert "no accuracy" in r["note"] and "retrained" not in r
    assert r["model_parallel"] == "0:all:b4" and r["model_parallel_bytes"] == 2 * (150 * 4 // 8)
    assert (out / "pareto.png").is_file()
    assert "model parallelism 150 B" in capsys.readouterr().out
