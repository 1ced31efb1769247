"""Session fixtures for the synth tests: a few participants written once per session.

* ``plain``: participant 0 of seed 2024, all three fields, no quirks.
* ``quirky``: the same participant and noise stream with most quirks stacked
  (20201 and 20203 only), so pixels can be compared one to one with ``plain``.
* ``bare``: participant 1, field 20254 only, without a manifest.

Readers here use pydicom and zipfile directly (not ukbmri.io).
"""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ukbmri.synth import Quirks, build_phantom, sample_participants, write_participant

SEED = 2024
QUIRKY = Quirks(
    misspelled_manifest=True,
    crlf_manifest=True,
    duplicate_station=3,
    rescan_across_midnight=True,
    wf_size_mismatch=4,
    missing_station=6,
    fat_water_swap=True,
    wrong_name_field=True,
)


@dataclass
class SeriesData:
    number: int
    uid: str
    description: str
    image_type: tuple[str, ...]
    datasets: list  #: pydicom datasets sorted by InstanceNumber
    members: list

    @property
    def pixels(self) -> np.ndarray:
        return np.stack([d.pixel_array for d in self.datasets])

    @property
    def positions(self) -> np.ndarray:
        return np.array([[float(v) for v in d.ImagePositionPatient] for d in self.datasets])

    @property
    def acquired(self) -> datetime:
        d = self.datasets[0]
        return datetime.strptime(d.AcquisitionDate + d.AcquisitionTime.split(".")[0], "%Y%m%d%H%M%S")


def read_zip_series(path: Path) -> dict[tuple[int, str, tuple[str, ...]], SeriesData]:
    """All DICOM series of a zip keyed by (SeriesNumber, SeriesInstanceUID, ImageType)."""
    groups: dict = defaultdict(list)
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.endswith(".dcm"):
                ds = pydicom.dcmread(io.BytesIO(zf.read(name)))
                groups[(int(ds.SeriesNumber), str(ds.SeriesInstanceUID), tuple(ds.ImageType))].append((ds, name))
    out = {}
    for key, items in sorted(groups.items()):
        items.sort(key=lambda t: int(t[0].InstanceNumber))
        ds0 = items[0][0]
        out[key] = SeriesData(key[0], key[1], str(ds0.SeriesDescription), key[2], [d for d, _ in items], [n for _, n in items])
    return out


@pytest.fixture(scope="session")
def people():
    return sample_participants(2, np.random.default_rng(SEED))


@pytest.fixture(scope="session")
def plain(tmp_path_factory, people):
    p = people[0]
    out = tmp_path_factory.mktemp("plain")
    phantom = build_phantom(p)
    paths = write_participant(p, out, rng=np.random.default_rng([SEED, 0]), phantom=phantom)
    return {"p": p, "phantom": phantom, "paths": paths, "dir": out}


@pytest.fixture(scope="session")
def plain_dixon(plain):
    return read_zip_series(plain["paths"][20201])


@pytest.fixture(scope="session")
def quirky(tmp_path_factory, people):
    p = people[0]
    out = tmp_path_factory.mktemp("quirky")
    paths = write_participant(p, out, fields=(20201, 20203), quirks=QUIRKY, rng=np.random.default_rng([SEED, 0]))
    return {"p": p, "paths": paths, "dir": out, "quirks": QUIRKY}


@pytest.fixture(scope="session")
def bare(tmp_path_factory, people):
    p = people[1]
    out = tmp_path_factory.mktemp("bare")
    paths = write_participant(p, out, fields=(20254,), quirks=Quirks(no_manifest=True), rng=np.random.default_rng(1))
    return {"p": p, "paths": paths}


@pytest.fixture(scope="session")
def series_reader():
    return read_zip_series
