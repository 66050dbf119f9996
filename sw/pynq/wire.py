"""The request protocol between the PYNQ stand-in (:mod:`lcp.sw.pynq.sim`, in the driver's
process) and the simulated PL (:mod:`lcp.sw.pynq.simtb`, inside the simulator), and the register
offsets of the AXI DMA model. No pickles: fixed little-endian headers plus raw payload bytes.

Request: ``<B3xIQI`` = op, address, value, payload length; then the payload.
Reply: ``<B3xQQI`` = status (0 OK, 1 error), value, cycle (simulated clock cycle when the
request was answered), payload length; then the payload (an error message on status 1).
"""

from __future__ import annotations

import socket
import struct

__all__ = ["OP_HELLO", "OP_READ", "OP_WRITE", "OP_CYCLE", "OP_PAUSE", "OP_QUIT", "OK", "ERR",
           "send_request", "recv_request", "send_reply", "recv_reply", "WireError",
           "DMA_MM2S", "DMA_S2MM", "DMACR", "DMASR", "DMA_ADDR", "DMA_ADDR_MSB", "DMA_LENGTH",
           "SR_HALTED", "SR_IDLE", "SR_INT_ERR", "SR_SLV_ERR", "SR_DEC_ERR", "SR_IOC_IRQ",
           "SR_ERR_IRQ", "CR_RS", "CR_RESET"]

OP_HELLO, OP_READ, OP_WRITE, OP_CYCLE, OP_PAUSE, OP_QUIT = 1, 2, 3, 4, 5, 6
OK, ERR = 0, 1

_REQ = struct.Struct("<B3xIQI")
_REP = struct.Struct("<B3xQQI")

# AXI DMA (PG021) simple-mode registers, byte offsets from the channel's base
DMA_MM2S, DMA_S2MM = 0x00, 0x30
DMACR, DMASR, DMA_ADDR, DMA_ADDR_MSB, DMA_LENGTH = 0x00, 0x04, 0x18, 0x1C, 0x28
CR_RS, CR_RESET = 0x1, 0x4
SR_HALTED, SR_IDLE = 0x1, 0x2
SR_INT_ERR, SR_SLV_ERR, SR_DEC_ERR = 0x10, 0x20, 0x40
SR_IOC_IRQ, SR_ERR_IRQ = 0x1000, 0x4000


class WireError(ConnectionError):
    """The other side closed the connection or sent a malformed message."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise WireError("connection closed")
        buf += chunk
    return bytes(buf)


def send_request(sock, op: int, addr: int = 0, value: int = 0, payload: bytes = b"") -> None:
    sock.sendall(_REQ.pack(op, addr & 0xFFFF_FFFF, value & (2**64 - 1), len(payload)) + payload)


def recv_request(sock) -> tuple[int, int, int, bytes]:
    op, addr, value, n = _REQ.unpack(_recv_exact(sock, _REQ.size))
    return op, addr, value, (_recv_exact(sock, n) if n else b"")


def send_reply(sock, status: int, value: int = 0, cycle: int = 0, payload: bytes = b"") -> None:
    sock.sendall(_REP.pack(status, value & (2**64 - 1), cycle & (2**64 - 1), len(payload))
                 + payload)


def recv_reply(sock) -> tuple[int, int, int, bytes]:
    status, value, cycle, n = _REP.unpack(_recv_exact(sock, _REP.size))
    return status, value, cycle, (_recv_exact(sock, n) if n else b"")
