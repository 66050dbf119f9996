"""Shared fixtures: quiet third-party warnings, a per-session cache folder."""

import os
import warnings

import pytest


def pytest_configure(config):
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="session", autouse=True)
def _quiet_torch():
    try:
        import torch
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:
        pass
