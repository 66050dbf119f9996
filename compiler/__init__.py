"""LCP toolkit: the integer IR, the QONNX front end and the golden reference."""
