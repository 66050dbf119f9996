"""The front end's error and the small node helpers every handler uses."""

from __future__ import annotations

from onnx import helper

from ..tensor import IRError

__all__ = ["FrontendError", "node_error", "attributes", "BIT_RANGE", "check_bits"]

#: Bit widths accepted for weights and activations (biases may be up to 32 bit). 1-bit
#: layers are bipolar (``BipolarQuant``) or unsigned 0/1 ``Quant``s.
BIT_RANGE = (1, 8)


class FrontendError(IRError):
    """A model outside the supported subset; the message names the node and the problem."""


def node_error(node, msg: str) -> FrontendError:
    return FrontendError(f"node {node.name!r} ({node.op_type}): {msg}")


def attributes(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def check_bits(node, bits: int, what: str, lo: int = BIT_RANGE[0], hi: int = BIT_RANGE[1]):
    if not lo <= bits <= hi:
        raise node_error(node, f"{what} bit width {bits} is out of range {lo}..{hi}")
