"""ml4h-layout hd5 tensor files from UK Biobank liver zips (fields 20203, 20254).

What ml4h's tensorizer (``ml4h/tensorize/tensor_writer_ukbb.py``) does for
the liver, reproduced image for image:

* every DICOM image's series name is ``SeriesDescription.lower().replace(' ', '_')``;
  only ``gre_mullti_echo_10_te_liver`` and ``lms_ideal_optimised_low_flip_6dyn``
  are liver tensors here (other series are skipped);
* an image whose ``LargestImagePixelValue`` exceeds 2048 goes to
  ``<series>_12bit`` instead (magnitude or phase alike: in practice the phase
  images). Without the tag, the image's largest stored value decides;
* a tensor is ``(Rows, Columns, number of images routed to it)`` float32 of the
  raw stored values (``pixel_array``: no RescaleSlope/Intercept); image goes to
  channel ``InstanceNumber - 1`` (20203), or ``6 * (InstanceNumber - 1) +
  (SeriesNumber - min) // 2`` (20254; ``min`` over all IDEAL images of the zip,
  12-bit ones included);
* it is stored at ``/ukb_liver_mri/<series>/instance_<visit>`` (gzip) with the
  acquisition date as attribute ``date`` (seconds since 1970, UTC midnight
  here; ml4h used local time), and ``mri_pixel_width_<series>``,
  ``mri_pixel_height_<series>``, ``mri_slice_thickness_<series>``,
  ``mri_patient_orientation_<series>``, ``mri_patient_position_<series>`` at
  the root (from the series' first image);
* one file per participant, ``<eid>.hd5``, all visits in it; labels go to
  ``/continuous/<name>`` (length-1 float64).

Where ml4h's result would depend on the order of a directory listing (two
images for one channel: magnitude and phase both under 2048) or crash (a
channel beyond the tensor, images of different sizes), this module raises
:class:`~ukbmri.errors.LiverInputError` for that participant visit instead.
"""

from __future__ import annotations

import calendar
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ukbmri.errors import LiverInputError, TargetsError, UkbmriError
from ukbmri.io.hd5 import LABEL_GROUP, LIVER_GROUP, write_ml4h_file
from ukbmri.preprocess.tensormaps import TENSOR_MAPS
from ukbmri.types import ParticipantKey

__all__ = [
    "ML4H_LIVER_SERIES",
    "ML4H_12BIT_LIMIT",
    "Ml4hImage",
    "Ml4hTensor",
    "LiverVisit",
    "TensorizeFailure",
    "TensorizeSummary",
    "find_liver_visits",
    "read_ml4h_images",
    "ml4h_tensors_from_images",
    "ml4h_tensors_from_zip",
    "read_label_table",
    "ml4h_datasets",
    "tensorize_liver",
]

log = logging.getLogger(__name__)

GRE_SERIES = "gre_mullti_echo_10_te_liver"
IDEAL_SERIES = "lms_ideal_optimised_low_flip_6dyn"
#: The liver series ml4h writes (each also as ``<series>_12bit``).
ML4H_LIVER_SERIES = (GRE_SERIES, IDEAL_SERIES)
#: Images whose LargestImagePixelValue exceeds this go to ``<series>_12bit``.
ML4H_12BIT_LIMIT = 2048
LIVER_FIELDS = (20203, 20254)
_LITTER = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)


@dataclass(frozen=True)
class Ml4hImage:
    """One DICOM image as ml4h's tensorizer sees it."""

    member: str
    series: str  #: ml4h series name (before 12-bit routing)
    series_number: int
    instance_number: int
    largest: float  #: LargestImagePixelValue, or the largest stored value without the tag
    pixels: np.ndarray  #: (rows, cols) raw stored values
    pixel_spacing: tuple[float, float]
    slice_thickness: float | None
    orientation: tuple[float, ...]
    position: tuple[float, ...]
    acquisition_date: str | None  #: YYYYMMDD


@dataclass(frozen=True)
class Ml4hTensor:
    """One ml4h liver tensor of one visit."""

    name: str  #: series name, ``_12bit`` appended when routed there
    instance: int  #: visit (2 = first imaging visit)
    hwc: np.ndarray  #: (rows, cols, n_images) float32, ml4h layout
    first: Ml4hImage  #: the image its geometry datasets come from

    @property
    def date(self) -> float | None:
        d = self.first.acquisition_date
        if not d or len(d) < 8 or not d[:8].isdigit():
            return None
        return float(calendar.timegm((int(d[:4]), int(d[4:6]), int(d[6:8]), 0, 0, 0)))


@dataclass(frozen=True)
class LiverVisit:
    """The liver zips of one participant visit."""

    eid: int
    instance: int
    zips: tuple[Path, ...]


@dataclass(frozen=True)
class TensorizeFailure:
    eid: int | None
    instance: int | None
    input: str
    error: str
    message: str


@dataclass
class TensorizeSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  #: files already there (no overwrite)
    failures: list[TensorizeFailure] = field(default_factory=list)
    unnamed: list[Path] = field(default_factory=list)  #: .zip files not named <eid>_<field>_<instance>_<array>


# --------------------------------------------------------------------------- finding zips
def find_liver_visits(
    inputs: Iterable[str | os.PathLike[str]], fields: Sequence[int] = LIVER_FIELDS
) -> tuple[list[LiverVisit], list[Path]]:
    """Liver zips under ``inputs`` (files or folders, searched recursively), grouped per participant visit.

    Zips are recognised by their UK Biobank name ``<eid>_<field>_<instance>_<array>.zip``
    (:meth:`ParticipantKey.from_path`); returns the visits sorted by (eid, instance)
    and the ``.zip`` files whose names do not follow the convention (not read).
    """
    from ukbmri.engine.cohort import Cohort

    cohort = Cohort.discover(inputs, fields=tuple(fields))
    unnamed = [Path(a.input) for a in cohort.anomalies if a.error == "InputNameError"]
    for a in cohort.anomalies:
        if a.error != "InputNameError":
            log.warning("%s: %s", a.input, a.message)
    visits = [LiverVisit(v.eid, v.instance, tuple(sorted(f.path for f in v.inputs.values()))) for v in cohort.visits]
    return visits, unnamed


# --------------------------------------------------------------------------- reading images
def _floats(v, n: int | None = None) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in v)
    except TypeError:
        out = (float(v),)
    if n is not None and len(out) != n:
        raise ValueError(f"expected {n} values, found {len(out)}")
    return out


def read_ml4h_images(path: str | os.PathLike[str]) -> list[Ml4hImage]:
    """The liver-series images of a zip, read as ml4h does (pydicom, raw ``pixel_array``).

    Members that are not DICOM, the manifest and operating-system litter are
    skipped; images of other series are left out.

    Raises
    ------
    NotAZipError, TruncatedZipError, UnsafeMemberError, MemberTooLargeError
        From the zip itself.
    LiverInputError
        A liver image without the tags ml4h reads or with undecodable pixels.
    """
    import pydicom

    from ukbmri.io.dicom import looks_like_dicom
    from ukbmri.io.manifest import is_manifest_name
    from ukbmri.io.zipsource import ZipSource

    out: list[Ml4hImage] = []
    with ZipSource(path) as src:
        for name in src.names:
            if _LITTER.search(name) or is_manifest_name(name):
                continue
            data = src.read(name)
            if not looks_like_dicom(data):
                log.debug("%s[%s]: not DICOM, skipped", path, name)
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(io.BytesIO(data), force=True)
                    series = str(ds.get("SeriesDescription", "")).lower().replace(" ", "_")
                    if series not in ML4H_LIVER_SERIES:
                        continue
                    px = np.asarray(ds.pixel_array)
                    largest = ds.get("LargestImagePixelValue")
                    out.append(
                        Ml4hImage(
                            member=name,
                            series=series,
                            series_number=int(ds.SeriesNumber),
                            instance_number=int(ds.InstanceNumber),
                            largest=float(largest) if largest is not None else float(px.max(initial=0)),
                            pixels=px,
                            pixel_spacing=_floats(ds.PixelSpacing, 2),  # type: ignore[arg-type]
                            slice_thickness=float(ds.SliceThickness) if "SliceThickness" in ds else None,
                            orientation=_floats(ds.ImageOrientationPatient, 6),
                            position=_floats(ds.ImagePositionPatient, 3),
                            acquisition_date=str(ds.get("AcquisitionDate", "")) or None,
                        )
                    )
            except UkbmriError:
                raise
            except Exception as exc:  # pydicom raises many types for bad headers / pixels
                raise LiverInputError(f"cannot read the image as ml4h does: {exc}", path=path, member=name) from None
    return out


# --------------------------------------------------------------------------- building tensors
def ml4h_tensors_from_images(
    images: Sequence[Ml4hImage], instance: int, *, path: str | os.PathLike[str] | None = None
) -> list[Ml4hTensor]:
    """ml4h's tensors of one zip's liver images (see the module notes), sorted by name."""
    views: dict[str, list[Ml4hImage]] = {}
    for im in images:
        name = im.series + "_12bit" if im.largest > ML4H_12BIT_LIMIT else im.series
        views.setdefault(name, []).append(im)
    ideal = [im.series_number for im in images if im.series == IDEAL_SERIES]
    min_ideal = min(ideal) if ideal else 0
    tensors = []
    for name, ims in sorted(views.items()):
        ims = sorted(ims, key=lambda im: (im.series_number, im.instance_number, im.member))
        shapes = {im.pixels.shape for im in ims}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise LiverInputError(f"{name}: images differ in size (ml4h would fail)", path=path,
                                  expected="one (rows, cols)", found=sorted(shapes))  # fmt: skip
        rows, cols = ims[0].pixels.shape
        hwc = np.zeros((rows, cols, len(ims)), dtype=np.float32)
        taken: dict[int, str] = {}
        for im in ims:
            if im.series == IDEAL_SERIES:
                ch = 6 * (im.instance_number - 1) + (im.series_number - min_ideal) // 2
            else:
                ch = im.instance_number - 1
            if not 0 <= ch < len(ims):
                raise LiverInputError(
                    f"{name}: image goes to channel {ch}, outside the tensor (ml4h would fail)",
                    path=path, member=im.member, expected=f"0..{len(ims) - 1}", found=ch,
                )  # fmt: skip
            if ch in taken:
                raise LiverInputError(
                    f"{name}: two images for channel {ch} (ml4h would keep whichever it listed last)",
                    path=path, member=im.member, found=f"{taken[ch]} and {im.member}",
                )  # fmt: skip
            taken[ch] = im.member
            hwc[..., ch] = im.pixels.astype(np.float32)
        tensors.append(Ml4hTensor(name, int(instance), hwc, ims[0]))
    return tensors


def ml4h_tensors_from_zip(path: str | os.PathLike[str], instance: int | None = None) -> list[Ml4hTensor]:
    """:func:`read_ml4h_images` then :func:`ml4h_tensors_from_images`; the visit from the file name by default."""
    if instance is None:
        key = ParticipantKey.from_path(path)
        instance = key.instance if key is not None else 2
    return ml4h_tensors_from_images(read_ml4h_images(path), instance, path=path)


# --------------------------------------------------------------------------- labels
_UKB_COLUMN = re.compile(r"^22402-(\d+)\.(\d+)$")
_ML4H_NAME = re.compile(r"^\d+_[A-Za-z0-9-]+_\d+_\d+$")
_SENTINEL_NAME = TENSOR_MAPS["liver_fat_echo_predicted"].dataset_name  # liver_fat_sentinel_prediction
_ALIASES = {"liver_fat_teacher_percent": _SENTINEL_NAME}


def _label_name(column: str) -> str | None:
    m = _UKB_COLUMN.match(column)
    if m:
        return f"22402_Liver-fat-percentage_{m.group(1)}_{m.group(2)}"
    if column in _ALIASES:
        return _ALIASES[column]
    if column == _SENTINEL_NAME or _ML4H_NAME.match(column):
        return column
    return None


def read_label_table(path: str | os.PathLike[str]) -> dict[int, dict[int | None, dict[str, float]]]:
    """Labels per participant: ``{eid: {instance or None: {ml4h label name: value}}}``.

    The table (CSV, or TSV for ``.tsv``/``.txt``) needs an ``eid`` column and
    label columns named as ml4h names them (``22402_Liver-fat-percentage_2_0``,
    ``liver_fat_sentinel_prediction``) or as UK Biobank / ukbmri do
    (``22402-2.0``; ``liver_fat_teacher_percent`` of a ``ukbmri run`` table
    becomes ``liver_fat_sentinel_prediction``). With an ``instance`` column
    the values are per visit. Empty cells are left out (no sentinel).

    Raises :class:`TargetsError` (no eid column, no label column, a
    non-numeric value, one participant visit on two rows).
    """
    import pandas as pd

    path = Path(path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    try:
        df = pd.read_csv(path, sep=sep)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise TargetsError(f"cannot read the label table: {exc}", path=path) from None
    cols = {c.lower(): c for c in df.columns}
    if "eid" not in cols:
        raise TargetsError("label table has no eid column", path=path, expected="eid", found=list(df.columns)[:8])
    names = {c: _label_name(c) for c in df.columns}
    labels = {c: n for c, n in names.items() if n is not None}
    if not labels:
        raise TargetsError("no label column ml4h knows", path=path,
                           expected="22402_Liver-fat-percentage_2_0, 22402-2.0, liver_fat_sentinel_prediction, "
                                    "liver_fat_teacher_percent", found=list(df.columns)[:8])  # fmt: skip
    inst_col = cols.get("instance")
    out: dict[int, dict[int | None, dict[str, float]]] = {}
    for i, row in df.iterrows():
        eid = int(row[cols["eid"]])
        inst = int(row[inst_col]) if inst_col is not None and pd.notna(row[inst_col]) else None
        values = {}
        for c, n in labels.items():
            v = row[c]
            if pd.isna(v):
                continue
            try:
                values[n] = float(v)
            except (TypeError, ValueError):
                raise TargetsError(f"non-numeric label in row {i + 2}", path=path, member=c, found=repr(v)) from None
        per = out.setdefault(eid, {})
        if inst in per:
            raise TargetsError(f"participant {eid} visit {inst} appears twice", path=path, member=f"row {i + 2}")
        per[inst] = values
    return out


def _labels_for(labels: Mapping[int | None, Mapping[str, float]] | None, visits: Sequence[int]) -> dict[str, float]:
    """A participant's labels: the rows without instance, else the row of its first written visit."""
    if not labels:
        return {}
    if None in labels:
        return dict(labels[None])
    for v in sorted(visits):
        if v in labels:
            return dict(labels[v])
    return {}


# --------------------------------------------------------------------------- writing
def ml4h_datasets(tensors: Sequence[Ml4hTensor], labels: Mapping[str, float] | None = None) -> dict:
    """hd5 dataset path -> array or (array, attributes), in ml4h's layout, for :func:`write_ml4h_file`."""
    out: dict = {}
    for t in tensors:
        attrs = {"date": t.date} if t.date is not None else {}
        key = f"/{LIVER_GROUP}/{t.name}/instance_{t.instance}"
        if key in out:
            raise LiverInputError("two zips of one visit give the same tensor", member=key)
        out[key] = (t.hwc, attrs)
        f = t.first
        root = {
            f"mri_pixel_width_{t.name}": np.float64(f.pixel_spacing[0]),
            f"mri_pixel_height_{t.name}": np.float64(f.pixel_spacing[1]),
            f"mri_patient_orientation_{t.name}": np.asarray(f.orientation, dtype=np.float64),
            f"mri_patient_position_{t.name}": np.asarray(f.position, dtype=np.float64),
        }
        if f.slice_thickness is not None:
            root[f"mri_slice_thickness_{t.name}"] = np.float64(f.slice_thickness)
        for k, v in root.items():
            out.setdefault(f"/{k}", v)
    for name, value in (labels or {}).items():
        out[f"/{LABEL_GROUP}/{name}"] = np.array([float(value)], dtype=np.float64)
    return out


def tensorize_liver(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    labels: Mapping[int, Mapping[int | None, Mapping[str, float]]] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TensorizeSummary:
    """Write ``<out_dir>/<eid>.hd5`` for every participant with liver zips under ``inputs``.

    A participant visit that fails is recorded in the summary and left out of
    the file (its other visits are written); a participant whose every visit
    failed gets no file. Existing files are skipped unless ``overwrite``.
    ``labels``: :func:`read_label_table`'s result.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    visits, unnamed = find_liver_visits(inputs)
    summary = TensorizeSummary(unnamed=list(unnamed))
    for z in unnamed:
        log.warning("%s: not named <eid>_<field>_<instance>_<array>.zip, not read", z)
    by_eid: dict[int, list[LiverVisit]] = {}
    for v in visits:
        by_eid.setdefault(v.eid, []).append(v)
    for eid, vs in by_eid.items():
        target = out_dir / f"{eid}.hd5"
        if target.exists() and not overwrite:
            summary.skipped.append(target)
            for _ in vs:
                if progress:
                    progress(1)
            continue
        tensors: list[Ml4hTensor] = []
        good: list[int] = []
        for v in vs:
            try:
                mine = [t for z in v.zips for t in ml4h_tensors_from_zip(z, v.instance)]
                ml4h_datasets(mine)  # duplicate datasets of one visit fail the visit
                if not mine:
                    raise LiverInputError("no liver images (series gre_mullti_echo_10_te_liver / "
                                          "lms_ideal_optimised_low_flip_6dyn)", path=v.zips[0])  # fmt: skip
                tensors += mine
                good.append(v.instance)
            except (UkbmriError, OSError) as exc:
                where = getattr(exc, "path", None) or v.zips[0]
                msg = exc.message if isinstance(exc, UkbmriError) else str(exc)
                summary.failures.append(TensorizeFailure(eid, v.instance, str(where), type(exc).__name__, msg))
                log.warning("participant %d visit %d failed: %s", eid, v.instance, exc)
            if progress:
                progress(1)
        if not tensors:
            continue
        datasets = ml4h_datasets(tensors, _labels_for((labels or {}).get(eid), good))
        write_ml4h_file(target, datasets, overwrite=overwrite)
        summary.written.append(target)
    return summary
