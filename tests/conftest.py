"""Shared fixtures. Synthetic inputs are tiny, deterministic and built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def real_data_dir(shared_dir: Path) -> Path:
    d = shared_dir / "data" / "real"
    if not (d / "12.mat").is_file():
        pytest.skip("../shared/data/real is not present")
    return d


@pytest.fixture(scope="session")
def liver_dicom():
    """The tests/liver_dicom.py helpers (``dicom``, ``write_zip``): tiny liver DICOMs and zips."""
    import importlib.util
    import sys

    name = "ukbmri_tests_liver_dicom"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "liver_dicom.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]
