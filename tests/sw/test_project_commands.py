"""The project-level commands: ``lcp demo``, ``lcp train``, ``lcp bench``, ``lcp reproduce``."""

import json

import numpy as np
import pytest

from lcp.sw.cli import main


def test_demo_trains_then_reuses_and_golden_matches_brevitas(tmp_path, capsys):
    """The main job from nothing: train LeNet-5 split4 w4a4, golden on the held-out images."""
    from lcp.benchmarks.demo import run_demo

    lines = []
    r = run_demo(tmp_path, progress=False, out=lines.append)
    assert not r["cached"]
    assert (tmp_path / "lenet5_split4_w4a4" / "ir.json").exists()
    assert r["accuracy_golden"] >= 0.97          # the target for this model
    # golden is exact and Brevitas float32 can only differ at rounding ties: near-total agreement
    assert r["agreement"] >= 0.99
    assert r["counters"]["traffic_bytes"] > 0
    assert any("accuracy" in line for line in lines)

    assert main(["demo", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reused the cached run" in out
    assert f"{100 * r['accuracy_golden']:.1f} %" in out


def test_train_command_writes_a_cached_run(tmp_path, capsys):
    args = ["train", "--arch", "lenet_fc", "--dataset", "digits", "--split", "2", "--epochs",
            "1", "--runs", str(tmp_path)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["cached"] is False and 0.0 <= first["accuracy"] <= 1.0
    folder = tmp_path / first["out_dir"].split("/")[-1]
    for f in ("checkpoint.pt", "model.onnx", "metrics.json"):
        assert (folder / f).is_file()
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["cached"] is True and second["accuracy"] == first["accuracy"]


def test_train_command_rejects_a_data_set_the_arch_lacks(tmp_path, capsys):
    assert main(["train", "--arch", "cifarnet", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lcp: error:") and "cifarnet" in err and err.count("\n") == 1


def test_bench_rejects_unknown_parts(tmp_path, capsys):
    assert main(["bench", "--only", "golden,warp", "--results", str(tmp_path)]) == 2
    assert "warp" in capsys.readouterr().err


def test_golden_bench_measures_both_and_renders(tmp_path):
    from lcp.benchmarks.bench import GOLDEN_FILE, golden_bench, markdown
    from lcp.models.train import train

    run = train(arch="lenet5", dataset="mnist", split=4, epochs=1, train_subset=256,
                progress=False, out_dir=tmp_path / "run")
    r = golden_bench(results=tmp_path / "res", batch=32, repeats=2, run_dir=run.out_dir,
                     out=lambda s: None)
    saved = json.loads((tmp_path / "res" / GOLDEN_FILE).read_text())
    assert saved["batch"] == 32
    assert saved["golden_images_per_second"] > 0 and saved["brevitas_images_per_second"] > 0
    assert r["ratio"] == pytest.approx(saved["golden_images_per_second"]
                                       / saved["brevitas_images_per_second"])
    md = markdown(tmp_path / "res")
    assert f"{saved['ratio']:.2f}" in md
    assert "Not measured" in markdown(tmp_path / "nothing")


def test_counters_table_comes_from_the_ir(tmp_path):
    from lcp import load
    from lcp.benchmarks.reproduce import counters_markdown, zoo_counts
    from lcp.counters import count

    rows = zoo_counts(archs=("lenet5",), variants=((1, 0), (8, 0), (8, 40)), cache=tmp_path)
    base, s8, f40 = rows
    assert s8["params"] < base["params"] and f40["params"] > s8["params"]
    # the cached IR gives the same counts as the row
    c = count(load(tmp_path / f"{s8['name']}.json"))
    assert (c.params, c.macs, c.traffic_bytes) == (s8["params"], s8["macs"],
                                                   s8["traffic_bytes"])
    md = counters_markdown(rows)
    assert f"| lenet5 | split8 | " in md
    assert f"{base['params'] / s8['params']:.2f}x" in md
    assert "geometric mean over 1 architectures" in md


@pytest.mark.slow          # a 224x224 ResNet-18 exported and compiled (about a minute)
def test_imagenet_counters_next_to_the_published_ones(tmp_path):
    from lcp.benchmarks.reproduce import PUBLISHED, imagenet_markdown, zoo_counts

    (row,) = zoo_counts(archs=("resnet18_imagenet",), variants=((1, 0),), cache=tmp_path)
    params, macs, source = PUBLISHED["resnet18_imagenet"]
    assert abs(row["params"] / params - 1) < 0.01 and abs(row["macs"] / macs - 1) < 0.01
    md = imagenet_markdown([row])
    assert f"| resnet18_imagenet | split1 | {row['params'] / 1e6:.2f}M |" in md
    assert f"({source}, {100 * (row['params'] / params - 1):+.1f} %)" in md
    assert f"(LCP paper, {100 * (row['params'] / 11.69e6 - 1):+.1f} %)" in md


def test_readme_figures_replace_only_the_marked_block(tmp_path):
    from lcp.benchmarks.reproduce import readme_block, update_readme_figures

    readme = tmp_path / "README.md"
    readme.write_text("head\n<!-- figures:begin -->\nold\n<!-- figures:end -->\ntail\n")
    res = tmp_path / "results"
    res.mkdir()
    (res / "golden_bench.json").write_text(json.dumps({
        "batch": 256, "golden_images_per_second": 3000.0, "brevitas_images_per_second": 2000.0,
        "ratio": 1.5}))
    block = readme_block(res, tmp_path / "runs")
    update_readme_figures(readme, block)
    text = readme.read_text()
    assert text.startswith("head\n") and text.endswith("tail\n") and "\nold\n" not in text
    assert "3,000 images/s vs Brevitas 2,000 (ratio 1.50)" in text


def test_reproduce_section_rerenders_one_section_in_place(tmp_path, capsys):
    """`lcp reproduce --section`: the named section gets its generator's text, the others and
    the head stay byte for byte; an unknown section is one line, exit 2; one the file lacks is
    inserted in its place."""
    from lcp.benchmarks import paper_table
    from lcp.benchmarks.reproduce import refresh_sections

    title = "The LCP paper's FPGA latency table (cycle models, XC7Z020)"
    doc = tmp_path / "REPRODUCTION.md"
    doc.write_text(f"# head\n\n## Accuracy (MNIST, held-out 1,000 images)\n\nkept\n\n"
                   f"## {title}\n\nstale table\n\n## Synthesis (FPGA and ASIC)\n\nalso kept\n")
    res = tmp_path / "results"
    res.mkdir()
    assert refresh_sections(doc, ["The LCP paper"], res, tmp_path / "runs") == [title]
    text = doc.read_text()
    assert "stale table" not in text and paper_table.markdown(res, tmp_path / "runs") in text
    assert text.startswith("# head\n\n## Accuracy (MNIST, held-out 1,000 images)\n\nkept\n\n")
    assert text.endswith("## Synthesis (FPGA and ASIC)\n\nalso kept\n")
    assert main(["reproduce", "-o", str(doc), "--results", str(res),
                 "--section", "No such section"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    # a section added to SECTIONS after the file's last full run goes where a full run puts it
    new = "224x224 ImageNet models on the XC7Z020 (lcp compile --budget)"
    assert refresh_sections(doc, ["224x224"], res, tmp_path / "runs") == [new]
    text = doc.read_text()
    assert text.index(f"## {title}\n") < text.index(f"## {new}\n") < text.index("## Synthesis")
    assert text.endswith("## Synthesis (FPGA and ASIC)\n\nalso kept\n")
