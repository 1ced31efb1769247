"""Fixtures for the training tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run torch single-threaded: the tiny tensors here gain nothing from threads, and on a
    busy shared machine torch's intra-op pool waits for starved workers (10-1000x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
