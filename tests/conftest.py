"""Shared fixtures."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def f64():
    """Run a test with float64 as torch's default dtype, restoring the previous default after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
