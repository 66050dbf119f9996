"""``lcp search``: architecture search over exchange points (:mod:`lcp.models.search`).

Writes ``pareto.json`` (every scored policy, the Pareto front, the retrained points and their
held-out accuracies) and ``pareto.png`` to the output folder; the retrained models are run
folders under ``--runs`` (checkpoint, QONNX with the branch partition, metrics), like any run of
``lcp train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lcp.usage import UsageError

__all__ = ["register"]


def register(app: typer.Typer) -> None:

    @app.command("search")
    def search_cmd(
            arch: str = typer.Option("lenet5", help="zoo architecture"),
            dataset: str = typer.Option("mnist", help="data set (an arch without data: bytes "
                                                      "and modelled latency only)"),
            split: int = typer.Option(4, help="branches: 2, 4 or 8"),
            widen: int = typer.Option(0, help="widening in percent"),
            bits: str = typer.Option("2,4", help="bit widths a point may send at"),
            supernet_epochs: int = typer.Option(6, min=1),
            samples: int = typer.Option(100, min=0, help="random policies scored"),
            val: int = typer.Option(500, min=50, help="validation images (from the training "
                                                      "set)"),
            retrain: int = typer.Option(2, min=1, help="Pareto points retrained"),
            retrain_epochs: int = typer.Option(12, min=1),
            seed: int = typer.Option(0),
            out: Optional[Path] = typer.Option(None, "-o", "--out",
                                               help="default results/search/ARCH-splitS"),
            runs: Path = typer.Option(Path("runs"), help="runs root of the retrained models")):
        """Search exchange points (one-shot supernet): accuracy vs bytes per inference."""
        # late: lcp.models pulls in torch and Brevitas, which only this command needs
        from lcp.models.search import SearchConfig, search  # late: torch, as above
        from lcp.models.zoo import ARCHS  # late: torch, as above

        if arch not in ARCHS:
            raise UsageError(f"--arch {arch!r}: one of {', '.join(ARCHS)}")
        try:
            bw = tuple(int(b) for b in bits.split(","))
        except ValueError:
            raise UsageError(f"--bits {bits!r}: comma-separated integers") from None
        if any(not 2 <= b <= 8 for b in bw) or split not in (2, 4, 8):
            raise UsageError("--bits must be in 2..8 and --split one of 2, 4, 8")
        out = out or Path("results/search") / f"{arch}-split{split}"
        cfg = SearchConfig(arch=arch, dataset=dataset, split=split, widen=widen, bits=bw,
                           supernet_epochs=supernet_epochs, samples=samples, val=val,
                           retrain=retrain, retrain_epochs=retrain_epochs, seed=seed)
        try:
            r = search(cfg, out, log=lambda m: typer.echo(m, err=True), runs=runs)
        except ValueError as e:
            raise UsageError(str(e)) from None
        typer.echo(f"wrote {out / 'pareto.json'} and {out / 'pareto.png'}")
        if "retrained" in r:
            mp = r["model_parallel"]
            for t, v in r["retrained"].items():
                name = "LCP" if not t else ("model-parallel" if t == mp else t)
                typer.echo(f"  {name:40s} {v['bytes']:6d} B exchanged/image "
                           f"({100 * v['reduction_vs_mp']:6.1f} % fewer than model "
                           f"parallelism)  held-out accuracy {100 * v['test_accuracy']:.2f} %")
            typer.echo(f"  policies meeting -{100 * cfg.target_reduction:.1f} % within "
                       f"{100 * cfg.max_drop:.0f} point: {r['target']['met_by'] or 'none'}")
        else:
            typer.echo(f"  {r['note']}; model parallelism {r['model_parallel_bytes']} B")
