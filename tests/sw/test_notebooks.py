"""The PYNQ notebooks run headless (nbclient) against the simulated board
(``LCP_PYNQ_BACKEND=sim``), from the repository root, and assert their own results (hardware ==
golden); the cluster notebook runs one simulated board per branch (about 100 s from a cold
build cache)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _run(name: str, monkeypatch, images: int) -> str:
    monkeypatch.setenv("LCP_PYNQ_BACKEND", "sim")
    monkeypatch.setenv("LCP_NB_IMAGES", str(images))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", ""))
            text.append(str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_classify_notebook(monkeypatch):
    out = _run("01_classify_mnist.ipynb", monkeypatch, images=10)
    assert "backend: sim" in out and "hardware == golden: True" in out


def test_latency_notebook(monkeypatch):
    out = _run("02_latency_throughput.ipynb", monkeypatch, images=8)
    assert "in the cycle model" in out and "hw cycles" in out


def test_cluster_notebook(monkeypatch):
    out = _run("03_cluster_branches.ipynb", monkeypatch, images=8)
    assert "equals golden bit for bit: True" in out and "pynq-sim" in out
