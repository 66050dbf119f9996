"""Architecture search over exchange points (:mod:`lcp.models.exchange`): where the branches
meet, how many channels they send and at how many bits, for accuracy against bytes per
inference (and a modelled latency).

Method: a one-shot weight-sharing supernet, sized for 2 CPU cores. The supernet is the exchange
net with a point at every candidate layer sending all channels, with one sending quantizer per
bit width choice; at every training step each point draws a choice at random (off, or ``k``
channels at ``b`` bits: the received channels beyond ``k`` are zeros, "off" zeros them all),
so all policies share the weights. Each point is off with probability ``p_off`` (0.5), else
one of its other choices uniformly: with a uniform draw over all choices the sparse policies
(LCP: every point off) are almost never trained and the supernet ranks them far below what
they reach once retrained. Then many policies are scored with the shared weights on a
validation split carved from the training set (never the held-out test set): the random ones,
every single-point policy, LCP (no point) and model parallelism (:func:`all_points`). The
Pareto front of validation accuracy against exchanged bytes is written, a few policies are
chosen on it and retrained from scratch with the QAT recipe (:func:`lcp.models.train.train`,
which exports them to QONNX with their partition, like any zoo model), next to LCP and model
parallelism retrained the same way; their held-out accuracies are the ones reported.

Bytes: what the branches send each other per image (:func:`exchange_bytes`, equal to the
compiler's traffic counter minus the input scattered to the branches and the branch outputs
gathered by the merge, which every member of the family sends alike). Modelled latency:
``MACs of one LCP branch / mac_rate + per point (link_latency + bytes one node receives /
bandwidth)`` (the MACs the received channels add to the next layer are left out: a few percent
for the small ``k`` the front keeps). It is recorded for every policy; the front is drawn on
accuracy and bytes.

:func:`search` returns and writes ``pareto.json``; :func:`plot` draws ``pareto.png``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lcp.datasets import load as load_dataset

from .common import quant_relu
from .exchange import (ExchangeNet, ExchangePoint, ExchangePolicy, _value, all_points,
                       build_exchange, candidate_points, exchange_bytes, exchange_shapes)
from .train import TrainConfig, _shift as _train_shift, train
from .zoo import ARCHS

__all__ = ["SearchConfig", "SuperNet", "search_space", "modelled_latency", "pareto_front",
           "search", "plot"]


@dataclass
class SearchConfig:
    """Search settings (defaults: minutes on 2 CPU cores for LeNet-5 split4)."""
    arch: str = "lenet5"
    dataset: str = "mnist"
    split: int = 4
    widen: int = 0
    weight_bits: int = 4
    act_bits: int = 4
    bits: tuple = (2, 4)
    supernet_epochs: int = 6
    samples: int = 150
    val: int = 500
    retrain_epochs: int = 12
    retrain: int = 2
    seed: int = 0
    mac_rate: float = 1e8
    bandwidth: float = 62.5e6 / 8
    link_latency: float = 1e-3
    target_reduction: float = 0.866
    max_drop: float = 0.01
    train_subset: int | None = None
    p_off: float = 0.5


class SuperNet(ExchangeNet):
    """The supernet: every candidate point, all channels, one sending quantizer per bit width;
    :attr:`choice` (point index -> ``(k, bits)`` or None) selects the active policy."""

    choice: dict

    def set_policy(self, policy: ExchangePolicy) -> None:
        self.choice = {}
        for s, after in enumerate(self.afters):
            p = policy.at(after)
            self.choice[s] = None if p is None else (
                self.sent[s] if p.k is None else min(p.k, self.sent[s]), p.bits)

    def sent_at(self, s: int, ys: list) -> list[torch.Tensor]:
        """The active policy's sends at point ``s``: ``k`` channels through the sender of its
        bit width, zeros for the channels it does not send (all of them when the point is
        off), so that every policy has the supernet's shapes."""
        c = self.choice.get(s)
        full = self.sent[s]
        sent = []
        for i, y in enumerate(ys):
            v = _value(y)
            if c is None:
                sent.append(torch.zeros_like(v[:, :full]))
                continue
            k, b = c
            z = self.senders[i][s][str(b)](v[:, :k]).value
            if k < full:
                z = torch.cat([z, torch.zeros_like(v[:, k:full])], 1)
            sent.append(z)
        return sent


def build_supernet(cfg: SearchConfig, num_classes: int, in_shape) -> SuperNet:
    full = ExchangePolicy(tuple(ExchangePoint(a, None, cfg.act_bits)
                                for a in candidate_points(cfg.arch)))
    net = build_exchange(cfg.arch, full, split=cfg.split, widen=cfg.widen,
                         weight_bits=cfg.weight_bits, act_bits=cfg.act_bits,
                         num_classes=num_classes, in_shape=in_shape)
    net.__class__ = SuperNet
    net.afters = [p.after for p in full.points]
    net.senders = nn.ModuleList(nn.ModuleList(nn.ModuleDict({str(b): quant_relu(b)
                                                             for b in cfg.bits})
                                              for _ in full.points) for _ in range(cfg.split))
    net.choice = {}
    return net


def search_space(cfg: SearchConfig, in_shape=None) -> list[list]:
    """Per candidate point, its choices: None (off) or ``(k, bits)`` with ``k`` in 1, half and
    all of the channels a branch holds there."""
    full = ExchangePolicy(tuple(ExchangePoint(a, None, cfg.act_bits)
                                for a in candidate_points(cfg.arch)))
    out = []
    for p in full.points:
        w = exchange_shapes(cfg.arch, ExchangePolicy((p,)), split=cfg.split, widen=cfg.widen,
                            in_shape=in_shape)[0][0]
        ks = sorted({1, max(1, w // 2), w})
        out.append([None] + [(None if k == w else k, b) for k in ks for b in cfg.bits])
    return out


def _policy(afters, picks) -> ExchangePolicy:
    return ExchangePolicy(tuple(ExchangePoint(a, c[0], c[1])
                                for a, c in zip(afters, picks) if c is not None))


def _macs(net: nn.Module, in_shape) -> int:
    """Multiply-accumulates of branch 0 and the merge's share per image (hooks on convs/FCs)."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total[0] += out[0].numel() * k if out.dim() == 4 else 0
        elif isinstance(mod, nn.Linear):
            total[0] += mod.in_features * mod.out_features
    hs = [m.register_forward_hook(hook) for m in net.branches[0].modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.eval()
        net(torch.zeros(1, *in_shape))
    for h in hs:
        h.remove()
    return total[0]


def modelled_latency(cfg: SearchConfig, policy: ExchangePolicy, macs: int, in_shape=None) -> float:
    """Seconds per image: one branch's compute, then per point a link latency and the bytes
    one node receives over its link (see the module doc)."""
    t = macs / cfg.mac_rate
    for p, shape in zip(policy.points, exchange_shapes(cfg.arch, policy, split=cfg.split,
                                                       widen=cfg.widen, in_shape=in_shape)):
        t += cfg.link_latency + (cfg.split - 1) * ((math.prod(shape) * p.bits + 7) // 8) \
            / cfg.bandwidth
    return t


def pareto_front(rows: list[dict], acc="val_accuracy", cost="bytes") -> list[dict]:
    """Rows not dominated (no other row at most as costly and more accurate, or cheaper and
    at least as accurate), by increasing cost."""
    front, best = [], -1.0
    for r in sorted(rows, key=lambda r: (r[cost], -r[acc])):
        if r[acc] > best:
            front.append(r)
            best = r[acc]
    return front


def _shift(x, gen, p=2):
    return _train_shift(x, p, gen)


def _train_supernet(net, space, x, y, cfg, log):
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.supernet_epochs)
    shift = min(x.shape[2:]) >= 16
    for epoch in range(cfg.supernet_epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        t0, loss_sum = time.perf_counter(), 0.0
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            xb = _shift(x[idx], gen) if shift else x[idx]
            net.set_policy(_policy(net.afters, [None if rng.random() < cfg.p_off
                                                else rng.choice(c[1:]) for c in space]))
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
        sched.step()
        log(f"supernet epoch {epoch + 1}/{cfg.supernet_epochs}: loss "
            f"{loss_sum / len(order):.3f} ({time.perf_counter() - t0:.0f} s)")
    from brevitas.graph.calibrate import finalize_collect_stats
    net.apply(finalize_collect_stats)
    return net.eval()


@torch.no_grad()
def _accuracy(net, x, y) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).float().mean())


def _run_name(cfg: SearchConfig, text: str) -> str:
    return TrainConfig(arch=cfg.arch, dataset=cfg.dataset, split=cfg.split, widen=cfg.widen,
                       weight_bits=cfg.weight_bits, act_bits=cfg.act_bits,
                       epochs=cfg.retrain_epochs, seed=cfg.seed, exchange=text or None,
                       train_subset=cfg.train_subset).name


def search(cfg: SearchConfig, out: Path, log=print, train_fn=None, runs=None) -> dict:
    """Run the search (module doc); write ``out/pareto.json`` and ``out/pareto.png``; the
    retrained models go to run folders under ``runs`` (default: the training default)."""
    from brevitas.graph.calibrate import finalize_collect_stats  # noqa: F401 (brevitas loaded)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = ARCHS[cfg.arch]
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    has_data = cfg.dataset in spec.real_data
    in_shape = spec.in_shape
    if has_data:
        data = load_dataset(cfg.dataset)
        in_shape = data.in_shape
    space = search_space(cfg, in_shape)
    afters = candidate_points(cfg.arch)
    mp = all_points(cfg.arch, cfg.act_bits)
    rng = random.Random(cfg.seed + 1)
    pols = {ExchangePolicy().text(): ExchangePolicy(), mp.text(): mp}
    for s, choices in enumerate(space):
        for c in choices[1:]:
            p = _policy(afters, [c if j == s else None for j in range(len(space))])
            pols[p.text()] = p
    for _ in range(cfg.samples):
        p = _policy(afters, [rng.choice(c) for c in space])
        pols[p.text()] = p
    base = build_exchange(cfg.arch, "", split=cfg.split, widen=cfg.widen, in_shape=in_shape,
                          num_classes=10 if has_data else None)
    macs = _macs(base, in_shape)
    mp_bytes = exchange_bytes(cfg.arch, mp, split=cfg.split, widen=cfg.widen, in_shape=in_shape)
    rows = [{"policy": t, "points": len(p.points),
             "bytes": exchange_bytes(cfg.arch, p, split=cfg.split, widen=cfg.widen,
                                     in_shape=in_shape),
             "latency_ms": 1e3 * modelled_latency(cfg, p, macs, in_shape)}
            for t, p in pols.items()]
    for r in rows:
        r["reduction_vs_mp"] = 1 - r["bytes"] / mp_bytes
    result = {"format": "lcp-search", "version": 1, "config": {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
        "candidate_points": afters, "space": [[c if c is None else list(c) for c in ch]
                                              for ch in space],
        "model_parallel": mp.text(), "model_parallel_bytes": mp_bytes, "branch_macs": macs,
        "candidates": rows}
    if not has_data:
        result["note"] = (f"{cfg.arch}: no data set here, random weights: bytes and modelled "
                          f"latency only, no accuracy")
        result["seconds"] = time.perf_counter() - t_start
        (out / "pareto.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(result, out / "pareto.png")
        return result

    g = torch.Generator().manual_seed(cfg.seed)
    x_tr, y_tr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    perm = torch.randperm(len(x_tr), generator=g)
    va, tr = perm[:cfg.val], perm[cfg.val:]
    if cfg.train_subset is not None:          # small runs (tests)
        tr = tr[:cfg.train_subset]
    log(f"[search] {cfg.arch} split{cfg.split}: supernet over points {afters}, "
        f"{len(rows)} policies to score on {cfg.val} validation images")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = build_supernet(cfg, data.num_classes, in_shape)
        _train_supernet(net, space, x_tr[tr], y_tr[tr], cfg, log)
        t0 = time.perf_counter()
        for i, r in enumerate(rows):
            net.set_policy(pols[r["policy"]])
            r["val_accuracy"] = _accuracy(net, x_tr[va], y_tr[va])
            if (i + 1) % 25 == 0 or i + 1 == len(rows):
                log(f"[search] scored {i + 1}/{len(rows)} policies "
                    f"({time.perf_counter() - t0:.0f} s)")
    finally:
        torch.set_num_threads(old_threads)
    front = pareto_front(rows)
    for r in rows:
        r["pareto"] = any(r is f for f in front)
    mp_row = next(r for r in rows if r["policy"] == mp.text())
    budget = (1 - cfg.target_reduction) * mp_bytes
    picks = []
    cheap = [r for r in front if 0 < r["bytes"] <= budget]
    if cheap:
        picks.append(max(cheap, key=lambda r: (r["val_accuracy"], -r["bytes"])))
    near = [r for r in front if r["bytes"] > 0 and
            r["val_accuracy"] >= mp_row["val_accuracy"] - cfg.max_drop]
    if near:
        picks.append(min(near, key=lambda r: r["bytes"]))
    for r in sorted(front, key=lambda r: -r["val_accuracy"]):
        if len(picks) >= cfg.retrain:
            break
        if r["bytes"] > 0 and r not in picks:
            picks.append(r)
    chosen = [r["policy"] for r in picks[:cfg.retrain]]
    result["chosen"] = chosen
    log(f"[search] Pareto front: {len(front)} policies; retraining {chosen} next to LCP and "
        f"model parallelism ({cfg.retrain_epochs} epochs each)")
    if train_fn is None:
        train_fn = train
    retrained = {}
    for text in ["", mp.text(), *chosen]:
        t0 = time.perf_counter()
        res = train_fn(cfg.arch, cfg.dataset, split=cfg.split, widen=cfg.widen,
                       weight_bits=cfg.weight_bits, act_bits=cfg.act_bits,
                       epochs=cfg.retrain_epochs, seed=cfg.seed, exchange=text or None,
                       train_subset=cfg.train_subset, out_dir=runs / _run_name(cfg, text)
                       if runs is not None else None, progress=False)
        row = next(r for r in rows if r["policy"] == text)
        retrained[text] = {"test_accuracy": res.accuracy, "run": res.out_dir.name,
                           "bytes": row["bytes"], "reduction_vs_mp": row["reduction_vs_mp"],
                           "latency_ms": row["latency_ms"], "val_accuracy": row["val_accuracy"]}
        log(f"[search] retrained {text or 'LCP (no exchange)'}: held-out accuracy "
            f"{res.accuracy:.4f}, {row['bytes']} B exchanged per image "
            f"({time.perf_counter() - t0:.0f} s)")
    result["retrained"] = retrained
    mp_acc = retrained[mp.text()]["test_accuracy"]
    ok = [t for t in chosen if retrained[t]["reduction_vs_mp"] >= cfg.target_reduction
          and retrained[t]["test_accuracy"] >= mp_acc - cfg.max_drop]
    result["target"] = {"reduction": cfg.target_reduction, "max_drop": cfg.max_drop,
                        "model_parallel_test_accuracy": mp_acc, "met_by": ok}
    result["seconds"] = time.perf_counter() - t_start
    (out / "pareto.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out / "pareto.png")
    return result


def plot(result: dict, path: Path) -> Path:
    """Exchanged bytes (symlog) against validation accuracy, the front, the retrained points."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["candidates"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if "val_accuracy" not in rows[0]:
        ys = [r["latency_ms"] for r in rows]
        ax.scatter([r["bytes"] for r in rows], ys, s=12, c="tab:blue")
        ax.set_ylabel("modelled latency (ms)")
        ax.set_title(f"{result['config']['arch']} split{result['config']['split']}: "
                     "bytes vs modelled latency (random weights)")
    else:
        ax.scatter([r["bytes"] for r in rows], [100 * r["val_accuracy"] for r in rows], s=10,
                   c="lightgray", label="policies (supernet, validation)")
        front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["bytes"])
        ax.plot([r["bytes"] for r in front], [100 * r["val_accuracy"] for r in front], "o-",
                c="tab:blue", ms=4, label="Pareto front (supernet, validation)")
        for t, r in result.get("retrained", {}).items():
            name = "LCP" if not t else ("model parallel" if t == result["model_parallel"]
                                        else t)
            ax.scatter([r["bytes"]], [100 * r["test_accuracy"]], marker="*", s=120,
                       zorder=5, label=f"retrained {name}: {100 * r['test_accuracy']:.1f} %")
        budget = (1 - result["config"]["target_reduction"]) * result["model_parallel_bytes"]
        ax.axvline(budget, ls="--", c="tab:red", lw=1,
                   label=f"-{100 * result['config']['target_reduction']:.1f} % of model "
                         "parallelism's bytes")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{result['config']['arch']} split{result['config']['split']} "
                     f"{result['config']['dataset']}: exchange-point search")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(-1, 2 * max(r["bytes"] for r in rows) + 10)
    ax.set_xlabel("bytes exchanged between branches per image")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
