"""Fixtures for the io tests: the DICOM/zip factory (tests/io/dicom_factory.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_factory():
    name = "ukbmri_tests_io_dicom_factory"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("dicom_factory.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def factory():
    """The tests/io/dicom_factory module (make_image, write_zip, dixon_members, ...)."""
    return _load_factory()


@pytest.fixture(scope="session")
def dixon_zip(tmp_path_factory, factory) -> Path:
    """A mini 20201 zip with a manifest (6 stations x 4 series x 3 slices of 8x8)."""
    d = tmp_path_factory.mktemp("dixon")
    return factory.write_zip(d / "1000001_20201_2_0.zip", factory.with_manifest(factory.dixon_members()))


@pytest.fixture(scope="session")
def gre_zip(tmp_path_factory, factory) -> Path:
    d = tmp_path_factory.mktemp("gre")
    return factory.write_zip(d / "1000001_20203_2_0.zip", factory.with_manifest(factory.gre_members()))


@pytest.fixture(scope="session")
def ideal_zip(tmp_path_factory, factory) -> Path:
    d = tmp_path_factory.mktemp("ideal")
    return factory.write_zip(d / "1000001_20254_2_0.zip", factory.with_manifest(factory.ideal_members()))
