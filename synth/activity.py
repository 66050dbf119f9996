"""Switching activity from a simulation's VCD: toggle rate and duty cycle of every net bit.

The *toggle rate* of a bit is its number of 0->1 and 1->0 transitions in a time window divided by
the clock periods in the window (OpenSTA's unit: transitions per clock period); its *duty cycle*
is the fraction of the window it spends at 1. Changes to or from ``x``/``z`` are not transitions
and time at ``x``/``z`` counts as 0.

Two readers give the same numbers: ``pyvcd`` (the ``vcd.reader`` tokenizer of the pyvcd package,
used for small files and as the reference in the tests) and ``fast`` (a streaming reader of the
same format for gate-level dumps with tens of millions of changes, where the tokenizer's
microseconds per token add up to minutes). ``reader="auto"`` picks ``fast`` above 20 MB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Activity", "vcd_activity"]


@dataclass
class Activity:
    """Per-bit activity over a window of a simulation.

    Members
    -------
    t0, t1 : the window, in VCD time units.
    period : clock period, in VCD time units.
    toggles : bit name -> transitions in the window (``name`` or ``name[i]``).
    high : bit name -> time at 1 in the window.
    """

    t0: float
    t1: float
    period: float
    toggles: dict[str, int] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)

    @property
    def cycles(self) -> float:
        """Clock periods in the window."""
        return (self.t1 - self.t0) / self.period

    def rate(self, name: str) -> float:
        """Transitions per clock period of bit ``name`` (KeyError when not in the dump)."""
        return self.toggles[name] / self.cycles

    def duty(self, name: str) -> float:
        """Fraction of the window bit ``name`` is 1."""
        return self.high[name] / (self.t1 - self.t0)

    def __contains__(self, name: str) -> bool:
        return name in self.toggles

    def summary(self) -> dict:
        """Mean and max toggle rate over all bits (for reports)."""
        if not self.toggles:
            return {"bits": 0, "mean_rate": None, "max_rate": None}
        rates = [t / self.cycles for t in self.toggles.values()]
        return {"bits": len(rates), "mean_rate": sum(rates) / len(rates), "max_rate": max(rates),
                "cycles": self.cycles}


def vcd_activity(path: str | os.PathLike, *, scope: str, period: float,
                 t0: float = 0.0, t1: float | None = None, reader: str = "auto") -> Activity:
    """Toggle counts and time at 1 of every bit declared directly in ``scope``.

    Parameters
    ----------
    path : the VCD file.
    scope : dotted scope path (e.g. ``lcp_tb.dut``), matched at the end of the full path (a
        simulator may add a root such as ``TOP``); only variables declared directly in it are
        read (nested scopes are not).
    period : clock period in VCD time units (the rate's denominator).
    t0, t1 : window; ``t1=None`` means the last time stamp of the file.
    reader : ``auto``, ``fast`` or ``pyvcd``.

    Raises
    ------
    ValueError
        The scope is not in the file, or the window is empty.
    """
    path = Path(path)
    if reader == "auto":
        reader = "fast" if path.stat().st_size > 20 << 20 else "pyvcd"
    if reader == "pyvcd":
        decls, changes = _pyvcd_stream(path, scope)
    elif reader == "fast":
        decls, changes = _fast_stream(path, scope)
    else:
        raise ValueError(f"unknown VCD reader {reader!r} (auto, fast, pyvcd)")
    return _accumulate(decls, changes, period, t0, t1, scope)


def _bit_names(ref: str, width: int, msb: int | None, lsb: int | None) -> list[str]:
    """Names of a variable's bits, index 0 of the list = the value string's last character."""
    if width == 1:
        return [ref if msb is None else f"{ref}[{msb}]"]
    if msb is None:
        msb, lsb = width - 1, 0
    step = -1 if msb >= lsb else 1
    idx = list(range(msb, lsb + step, step))            # left to right in the value string
    return [f"{ref}[{i}]" for i in reversed(idx)]


def _accumulate(decls, changes, period, t0, t1, scope) -> Activity:
    """Fold a stream of ``(time, id, value-string)`` into per-bit toggles and high time."""
    ids: dict[str, list[list[str]]] = {}
    for code, names in decls:
        ids.setdefault(code, []).append(names)
    if not ids:
        raise ValueError(f"scope {scope!r} declares no variable in this VCD")
    width = {c: len(v[0]) for c, v in ids.items()}
    cur: dict[str, str] = {c: "x" * w for c, w in width.items()}
    last: dict[str, float] = {c: t0 for c in ids}
    tog: dict[str, list[int]] = {c: [0] * w for c, w in width.items()}
    hi: dict[str, list[float]] = {c: [0.0] * w for c, w in width.items()}
    t_end = t0
    for t, code, val in changes:
        if t1 is not None and t > t1:
            break
        t_end = t
        if code not in cur:
            continue
        w = width[code]
        old = cur[code]
        if len(val) < w:                           # VCD drops leading digits of vectors
            pad = "0" if val[0] == "1" else val[0]
            val = pad * (w - len(val)) + val
        if t <= t0:
            cur[code] = val
            continue
        span = t - last[code]
        if w == 1:
            if old == "1":
                hi[code][0] += span
            if (old == "0" and val == "1") or (old == "1" and val == "0"):
                tog[code][0] += 1
        else:
            h, g = hi[code], tog[code]
            for k in range(w):
                a, b = old[w - 1 - k], val[w - 1 - k]
                if a == "1":
                    h[k] += span
                if a != b and a in "01" and b in "01":
                    g[k] += 1
        cur[code] = val
        last[code] = t
    end = t1 if t1 is not None else t_end
    if end <= t0:
        raise ValueError(f"empty activity window [{t0}, {end}]")
    act = Activity(t0=t0, t1=end, period=period)
    for code, lists in ids.items():
        w = width[code]
        old = cur[code]
        span = end - max(last[code], t0)
        for k in range(w):
            if old[w - 1 - k] == "1":
                hi[code][k] += span
        for names in lists:
            for k, n in enumerate(names):
                act.toggles[n] = tog[code][k]
                act.high[n] = hi[code][k]
    return act


def _in_scope(stack: list[str], scope: str) -> bool:
    path = ".".join(stack)
    return path == scope or path.endswith("." + scope)


def _pyvcd_stream(path: Path, scope: str):
    from vcd.reader import TokenKind, tokenize

    decls: list[tuple[str, list[str]]] = []
    stack: list[str] = []
    f = open(path, "rb")
    toks = tokenize(f)
    for tok in toks:
        k = tok.kind
        if k is TokenKind.SCOPE:
            stack.append(tok.scope.ident)
        elif k is TokenKind.UPSCOPE:
            stack.pop()
        elif k is TokenKind.VAR:
            if _in_scope(stack, scope):
                v = tok.var
                msb = lsb = None
                if v.bit_index is not None:
                    if isinstance(v.bit_index, tuple):
                        msb, lsb = v.bit_index
                    else:
                        msb = lsb = v.bit_index
                decls.append((v.id_code, _bit_names(v.reference, v.size, msb, lsb)))
        elif k is TokenKind.ENDDEFINITIONS:
            break

    def changes():
        t = 0
        try:
            for tok in toks:
                k = tok.kind
                if k is TokenKind.CHANGE_TIME:
                    t = tok.time_change
                elif k is TokenKind.CHANGE_SCALAR:
                    yield t, tok.scalar_change.id_code, tok.scalar_change.value
                elif k is TokenKind.CHANGE_VECTOR:
                    vc = tok.vector_change
                    v = vc.value
                    yield t, vc.id_code, (format(v, "b") if isinstance(v, int) else str(v).lower())
        finally:
            f.close()
    return decls, changes()


def _fast_stream(path: Path, scope: str):
    f = open(path, "r", errors="replace")
    decls: list[tuple[str, list[str]]] = []
    stack: list[str] = []
    for line in f:
        s = line.split()
        if not s:
            continue
        if s[0] == "$scope":
            stack.append(s[2])
        elif s[0] == "$upscope":
            stack.pop()
        elif s[0] == "$var":
            if _in_scope(stack, scope):
                width, code, ref = int(s[2]), s[3], s[4]
                msb = lsb = None
                if len(s) > 6 and s[5].startswith("["):
                    rng = s[5].strip("[]").split(":")
                    msb, lsb = int(rng[0]), int(rng[-1])
                elif "[" in ref:
                    ref, rng = ref.split("[", 1)
                    rng = rng.strip("]").split(":")
                    msb, lsb = int(rng[0]), int(rng[-1])
                decls.append((code, _bit_names(ref, width, msb, lsb)))
        elif s[0] == "$enddefinitions":
            break

    def changes():
        t = 0
        try:
            for line in f:
                c = line[0]
                if c == "0" or c == "1" or c == "x" or c == "z" or c == "X" or c == "Z":
                    yield t, line[1:].rstrip("\n").rstrip(), c.lower()
                elif c == "#":
                    t = int(line[1:])
                elif c == "b" or c == "B":
                    v, code = line[1:].split()
                    yield t, code, v.lower()
                elif c == "r" or c == "R":
                    continue                        # real values: no bits
        finally:
            f.close()
    return decls, changes()
