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


def load_helper(relpath: str):
    """A helper module of the test suite (tests are not a package under --import-mode=importlib)."""
    import importlib.util
    import sys

    name = "ukbmri_tests_" + relpath.replace("/", "_").removesuffix(".py")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / relpath)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="session")
def liver_dicom():
    """The tests/liver_dicom.py helpers (``dicom``, ``write_zip``): tiny liver DICOMs and zips."""
    return load_helper("liver_dicom.py")


@pytest.fixture(scope="session")
def badinputs():
    """The tests/badinputs.py helpers (``build_bad_cohort``)."""
    return load_helper("badinputs.py")


@pytest.fixture(scope="session")
def keras_files_module():
    """The tests/liver/keras_files.py helpers (Keras files of the ml4h liver architectures)."""
    return load_helper("liver/keras_files.py")
