"""Factories for liver tests: ukbmri.types.Series built directly, and a minimal UkbZip stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ukbmri.types import Series

GRE_DESC = "gre_mullti_echo_10_TE_liver"
IDEAL_DESC = "LMS IDEAL OPTIMISED LOW FLIP 6DYN"


@dataclass(frozen=True)
class FakeZip:
    """The attributes of ukbmri.io.UkbZip that the liver tensors read."""

    path: Path
    field: int
    series: tuple[Series, ...]


def make_series(
    *,
    number: int,
    kind: str,
    pixels: np.ndarray,
    echo_times_ms,
    instance_numbers=None,
    description: str = GRE_DESC,
    spacing=(2.5, 2.5),
) -> Series:
    n, rows, cols = pixels.shape
    inst = np.arange(1, n + 1) if instance_numbers is None else np.asarray(instance_numbers)
    itype = ("ORIGINAL", "PRIMARY", "M" if kind == "magnitude" else "P", "ND")
    return Series(
        source="test.zip",
        series_number=number,
        series_uid=f"1.2.3.{number}.{kind}",
        description=description,
        image_kind=kind,
        image_type=itype,
        acquired=None,
        members=tuple(f"{number}.{kind}.{i}.dcm" for i in range(n)),
        instance_numbers=inst,
        positions=np.tile([10.0, -20.0, 30.0], (n, 1)),
        orientation=np.array([1.0, 0, 0, 0, 1.0, 0]),
        pixel_spacing=spacing,
        shape=(rows, cols),
        echo_times_ms=np.asarray(echo_times_ms, dtype=float),
        slice_thickness=6.0,
        repetition_time_ms=27.0,
        flip_angle_deg=20.0,
        field_strength_t=1.5,
        pixels=pixels.astype(np.float32),
    )


@pytest.fixture
def gre_zip(tmp_path):
    """20203 stand-in: magnitude and phase share series number 7; magnitude TEs shuffled.

    Magnitude echo with TE t has every pixel equal to 100 * t plus a ramp; phase
    images are large values (as 12-bit phase would be).
    """

    def build(rows=150, cols=170, tes=None, order_seed=0, with_phase=True, with_magnitude=True):
        tes = np.round(2.38 * np.arange(1, 11), 2) if tes is None else np.asarray(tes, dtype=float)
        perm = np.random.default_rng(order_seed).permutation(len(tes))
        tes_shuffled = tes[perm]
        ramp = np.add.outer(np.arange(rows), np.arange(cols)).astype(np.float32) / 1000.0
        mag = np.stack([100.0 * t + ramp for t in tes_shuffled]).astype(np.float32)
        series = []
        if with_magnitude:
            series.append(make_series(number=7, kind="magnitude", pixels=mag, echo_times_ms=tes_shuffled))
        if with_phase:
            ph = np.full((len(tes), rows, cols), 3000.0, dtype=np.float32)
            series.append(make_series(number=7, kind="phase", pixels=ph, echo_times_ms=tes_shuffled))
        return FakeZip(tmp_path / "1000001_20203_2_0.zip", 20203, tuple(series))

    return build


IDEAL_TES = np.array([1.2, 3.2, 5.2, 7.2, 9.2, 11.2])


def ideal_value(echo: int, dynamic: int) -> float:
    """Pixel value marking (echo 1..6, dynamic 0..5) in the IDEAL stand-in."""
    return 1000.0 * echo + 10.0 * dynamic


@pytest.fixture
def ideal_zip(tmp_path):
    """20254 stand-in: 6 magnitude series (N0 + 2d) and 6 phase series (N0 + 2d + 1).

    Images within a series are stored in shuffled InstanceNumber order; every
    pixel of (echo e, dynamic d) equals ``ideal_value(e, d)``.
    """

    def build(n0=20, rows=224, cols=260, drop_dynamic=None, drop_echo=None, seed=1, numbers=None):
        rng = np.random.default_rng(seed)
        series = []
        numbers = [n0 + 2 * d for d in range(6)] if numbers is None else numbers
        for d, sn in enumerate(numbers):
            if d == drop_dynamic:
                continue
            echoes = [e for e in range(1, 7) if e != drop_echo]
            echoes = list(rng.permutation(echoes))
            px = np.stack([np.full((rows, cols), ideal_value(e, d), np.float32) for e in echoes])
            tes = IDEAL_TES[np.asarray(echoes) - 1]
            series.append(
                make_series(
                    number=sn, kind="magnitude", pixels=px, echo_times_ms=tes,
                    instance_numbers=echoes, description=IDEAL_DESC, spacing=(1.72, 1.72),
                )
            )  # fmt: skip
            series.append(
                make_series(
                    number=sn + 1, kind="phase", pixels=np.zeros_like(px), echo_times_ms=tes,
                    instance_numbers=echoes, description=IDEAL_DESC,
                )
            )  # fmt: skip
        rng.shuffle(series)
        return FakeZip(tmp_path / "1000001_20254_2_0.zip", 20254, tuple(series))

    return build


@pytest.fixture(scope="session")
def keras_files():
    """The tests/liver/keras_files.py helpers (Keras files of the ml4h liver architectures)."""
    import importlib.util
    import sys

    name = "ukbmri_tests_keras_files"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("keras_files.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture
def liver_factories():
    """``(make_series, FakeZip)`` for tests that build their own stand-ins."""
    return make_series, FakeZip
