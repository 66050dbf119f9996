"""An I/O harness for measuring a core's clock on an FPGA: the core as it sits inside the fabric.

A generated core has about 140 top-level ports (two AXI4-Stream buses). Placed and routed as
the top of a device, every port becomes a package pin, and the registers that drive or take a
port are pulled to its pin, often across the chip: on an ECP5, a register-to-register path of
the CifarNet-split8 branch had an 11 ns route to an output register next to its pin. Inside a
real system the core's ports meet a DMA engine or an interconnect in the fabric, not pins.

:func:`harness_verilog` wraps the core so that only three pins remain (``clk``, ``din``,
``dout``): every input but the clock is a bit of a shift register fed from ``din`` (so the
inputs change every cycle and nothing is constant-folded), and every output is registered and
folded into ``dout`` by a two-stage registered XOR tree (so no output logic is removed). All
the harness' paths are one register to the next, through at most one XOR of 16 bits. The
reset may go through a global buffer (``reset_buffer``): one net to every register of the
core, it took 15.6 ns of general routing on an ECP5. Its cells
are known (:attr:`Harness.ff`): the flow subtracts its flip-flops from the counts it reports.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Harness", "harness_verilog", "HARNESS_TOP"]

#: Module name of the harness (the synthesis top).
HARNESS_TOP = "lcp_io_harness"

_GROUP = 16          # output bits per first-stage XOR


@dataclass(frozen=True)
class Harness:
    """A harness: its Verilog text and its flip-flop count."""

    verilog: str
    ff: int
    in_bits: int
    out_bits: int


def harness_verilog(core: str, ports: list[tuple[str, int, str]], clock: str = "clk",
                    reset: str = "rst", reset_buffer: str | None = None) -> Harness:
    """Wrap module ``core`` whose ports are ``(name, width, "in" | "out")``.

    ``reset_buffer``: a global buffer cell with the ports ``CLKI``, ``CE``, ``CLKO`` (ECP5:
    ``DCCA``) that takes the core's ``reset`` input to every register on a global network,
    as a system distributes a reset to thousands of registers (nextpnr promotes only clocks).

    Raises
    ------
    ValueError
        The core has no input named ``clock``, no output, or a port of another direction.
    """
    ins = [(n, w) for n, w, d in ports if d == "in" and n != clock]
    outs = [(n, w) for n, w, d in ports if d == "out"]
    bad = [n for n, _, d in ports if d not in ("in", "out")]
    if bad:
        raise ValueError(f"module {core!r}: port {bad[0]!r} is neither an input nor an output")
    if not any(n == clock and d == "in" for n, _, d in ports):
        raise ValueError(f"module {core!r} has no clock input {clock!r}")
    if not outs:
        raise ValueError(f"module {core!r} has no output")
    n_in = max(sum(w for _, w in ins), 1)
    n_out = sum(w for _, w in outs)
    groups = -(-n_out // _GROUP)
    conns = [f".{clock}(clk)"]
    k = 0
    buffers = ""
    for name, w in ins:
        if name == reset and w == 1 and reset_buffer:
            buffers = (f"  wire rst_g;\n  {reset_buffer} rst_buf (.CLKI(sr[{k}]), .CE(1'b1), "
                       f".CLKO(rst_g));\n")
            conns.append(f".{name}(rst_g)")
        else:
            conns.append(f".{name}(sr[{k + w - 1}:{k}])")
        k += w
    k = 0
    for name, w in outs:
        conns.append(f".{name}(y[{k + w - 1}:{k}])")
        k += w
    shift = "{sr[%d:0], din}" % (n_in - 2) if n_in > 1 else "din"
    body = ",\n    ".join(conns)
    xors = "\n".join(f"    g[{j}] <= ^yq[{min((j + 1) * _GROUP, n_out) - 1}:{j * _GROUP}];"
                     for j in range(groups))
    text = f"""// I/O harness (lcp.synth.harness): the core's inputs from a shift register, its outputs
// registered and folded into one pin
module {HARNESS_TOP}(input clk, input din, output reg dout);
  reg [{n_in - 1}:0] sr;
  wire [{n_out - 1}:0] y;
  reg [{n_out - 1}:0] yq;
  reg [{groups - 1}:0] g;
{buffers}  {core} core (
    {body}
  );
  always @(posedge clk) begin
    sr <= {shift};
    yq <= y;
{xors}
    dout <= ^g;
  end
endmodule
"""
    return Harness(text, n_in + n_out + groups + 1, n_in, n_out)
