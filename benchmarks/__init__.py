"""Benchmarks, demos and the reproduction report: the top of the stack.

They import the library (models, compiler, hw, synth, sw) and nothing in the library imports
them (``tests/test_architecture.py`` checks it); their commands reach ``lcp`` through the
``lcp.commands`` entry points.

- :mod:`.demo`: ``lcp demo`` (train or reuse LeNet-5 split4, golden on held-out images).
- :mod:`.sim_demo`: ``lcp sim-demo`` / ``make sim`` (held-out images through the RTL).
- :mod:`.bench`: ``lcp bench`` (every part, the golden-speed part itself).
- :mod:`.hw`, :mod:`.synth`, :mod:`.pynq`: the hardware, synthesis and PYNQ parts.
- :mod:`.accuracy`: the split accuracy table; :mod:`.reproduce`: REPRODUCTION.md and the README
  figures.
"""
