"""QAT runs: the three output files, the cache, determinism, reload, and the accuracy target."""

import json
import time

import pytest
import torch

from lcp.benchmarks.accuracy import accuracy_table, format_table
from lcp.models import check_export_contract, example_input
from lcp.models.train import TrainConfig, load_run, run_dir, train

TINY = dict(arch="lenet_fc", dataset="digits", split=2, epochs=1, batch_size=64,
            train_subset=256, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train(**TINY, out_dir=out)


def test_run_writes_three_files(tiny_run):
    out = tiny_run.out_dir
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json", "model.onnx"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["arch"] == "lenet_fc" and m["config"]["split"] == 2
    assert m["config"]["train_subset"] == 256 and m["dataset"]["n_train"] == 256
    assert m["dataset"]["n_test"] == 360 and m["epochs"] == 1 and len(m["history"]) == 1
    assert m["correct"] == round(m["accuracy"] * 360) and 0 <= m["accuracy"] <= 1
    assert m["accuracy"] > 0.2                     # one epoch on 256 digits beats chance (0.1)
    assert m["train_seconds"] > 0 and m["params"]["weights"] == 2 * (64 * 150 + 150 + 150 * 50
                                                                       + 50) + 100 * 10 + 10
    assert check_export_contract(out / "model.onnx", split=2) == []
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_reloaded_run_equals_trained_model(tiny_run):
    model, metrics = load_run(tiny_run.out_dir)
    assert metrics["accuracy"] == tiny_run.accuracy
    x = example_input((1, 8, 8), 16)
    with torch.no_grad():
        assert torch.equal(model(x), tiny_run.model.eval()(x))


def test_cache_is_reused_and_force_retrains(tiny_run):
    out = tiny_run.out_dir
    stamp = (out / "checkpoint.pt").stat().st_mtime_ns
    again = train(**TINY, out_dir=out)
    assert again.cached and again.model is None and again.accuracy == tiny_run.accuracy
    assert (out / "checkpoint.pt").stat().st_mtime_ns == stamp
    forced = train(**TINY, out_dir=out, force=True)
    assert not forced.cached and (out / "checkpoint.pt").stat().st_mtime_ns != stamp
    assert forced.accuracy == tiny_run.accuracy    # same seed, same result
    other = train(**{**TINY, "seed": 1}, out_dir=out)   # other config in the folder: retrain
    assert not other.cached
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 1


def test_same_seed_same_weights(tmp_path):
    a = train(**TINY, out_dir=tmp_path / "a")
    b = train(**TINY, out_dir=tmp_path / "b")
    sa = torch.load(a.out_dir / "checkpoint.pt", weights_only=True)
    sb = torch.load(b.out_dir / "checkpoint.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_train_rejects_archs_without_data(tmp_path):
    with pytest.raises(ValueError, match="random weights only"):
        train(arch="cifarnet", dataset="mnist", out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="no real data set 'digits'"):
        train(arch="lenet5", dataset="digits", out_dir=tmp_path, progress=False)


def test_run_dir_names_differ_per_config(monkeypatch, tmp_path):
    monkeypatch.setenv("LCP_RUNS_DIR", str(tmp_path))
    a, b = TrainConfig(seed=0), TrainConfig(seed=1)
    assert run_dir(a).parent == tmp_path and run_dir(a) != run_dir(b)
    assert run_dir(a).name.startswith("lenet5_split4_w4a4-mnist-")


def test_accuracy_table_rows_and_format(tmp_path):
    kw = {k: v for k, v in TINY.items() if k not in ("arch", "split")}
    rows = accuracy_table(["lenet_fc"], (1, 2), runs_dir=tmp_path, **kw)
    assert [(r["arch"], r["split"]) for r in rows] == [("lenet_fc", 1), ("lenet_fc", 2)]
    assert rows[0]["delta"] == 0 and rows[1]["delta"] == pytest.approx(
        rows[1]["accuracy"] - rows[0]["accuracy"])
    assert not any(r["cached"] for r in rows)
    assert all(r["cached"] for r in accuracy_table(["lenet_fc"], (1, 2), runs_dir=tmp_path, **kw))
    text = format_table(rows)
    assert "| lenet_fc w4a4 |" in text and f"{100 * rows[1]['accuracy']:.1f}" in text
    with pytest.raises(ValueError, match="no real data"):
        accuracy_table(["vgg_s"], (1,), runs_dir=tmp_path, **kw)


@pytest.mark.slow
def test_lenet5_split4_w4a4_reaches_97_percent_in_10_minutes(tmp_path):
    t0 = time.perf_counter()
    r = train("lenet5", "mnist", split=4, weight_bits=4, act_bits=4, out_dir=tmp_path,
              progress=False)
    assert time.perf_counter() - t0 < 600
    assert r.accuracy >= 0.97, r.accuracy


def test_command_line_trains_and_prints_json(tmp_path, capsys):
    from lcp.models.train import main

    argv = ["--arch", "lenet_fc", "--dataset", "digits", "--split", "2", "--epochs", "1",
            "--out-dir", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cached"] is False and 0.2 < out["accuracy"] <= 1
    assert (tmp_path / "model.onnx").is_file()
    assert main(argv) == 0 and json.loads(capsys.readouterr().out)["cached"] is True
