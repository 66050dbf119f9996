"""LCP models: quantized (Brevitas) base networks split into independent branches.

- :mod:`.common`: the quantizers and quantized layer makers, defined once.
- :mod:`.zoo`: architectures as data (:data:`ARCHS`), the factory :func:`build`, named entry
  points such as :func:`lenet5_split4_w4a4`.
- :mod:`.net`: :class:`LCPNet` (input quantizer, branches, shared branch quantizer, merge).
- :mod:`.export`: :func:`export_qonnx` and the export contract (:func:`check_export_contract`).
- the data sets (MNIST subset, sklearn digits) are :mod:`lcp.datasets` (no torch needed).
- :mod:`.train`: QAT with a run cache (the accuracy table is :mod:`lcp.benchmarks.accuracy`).
- :mod:`.peers`: Brevitas' own example networks (bnn_pynq, MobileNet-v1 4-bit) built with random
  weights, calibrated and exported to QONNX (imported on demand, not here).
"""

import warnings as _warnings

with _warnings.catch_warnings():
    # importing brevitas.nn warns that an optional CUDA kernel package is missing: noise on every
    # command (the lcp command line filters it too)
    _warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
    from .common import check_bit_width
    from lcp.datasets import DATASETS, Dataset, load as load_dataset
    from .export import calibrate, check_export_contract, example_input, export_qonnx
    from .net import LCPNet, drop_branches
    from .zoo import *  # noqa: F401,F403  (ARCHS, build, entry points)
    from .zoo import __all__ as _zoo_all
    from .zoo import ARCHS, SPLITS, WIDENS, branch_width, build, from_name, model_name

__all__ = [
    "check_bit_width", "DATASETS", "Dataset", "load_dataset", "calibrate",
    "check_export_contract", "example_input", "export_qonnx", "LCPNet", "drop_branches",
    *_zoo_all,
]
