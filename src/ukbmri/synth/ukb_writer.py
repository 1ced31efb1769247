"""Write a participant's fields 20201, 20203 and 20254 as UK Biobank bulk zips.

Each zip ``<eid>_<field>_<instance>_0.zip`` holds flat numeric DICOM members
(``<SOPInstanceUID>.dcm``) and a ``manifest.csv`` whose header is
``filename,patientid,date,series discription,seriesid`` (the typo is real)
and whose date is written unquoted (``Jun 3, 2019``), so naive comma
splitting shifts columns. Zips are written atomically, deflated (level 1),
with fixed member timestamps: the same participant and seed give the same
bytes.

DICOM (explicit VR little endian, MR Image Storage, uint16, 12 bits stored,
MONOCHROME2, Manufacturer SIEMENS, 1.5 T):

* 20201: per station four series ``Dixon_noBH_{in,opp,F,W}`` (stations 1, 5, 6)
  or ``Dixon_BH_17s_{in,opp,F,W}`` (2-4); ImageType ``ORIGINAL\\PRIMARY\\DIXON\\IN_PHASE``,
  ``...\\OPPOSED_PHASE``, ``DERIVED\\PRIMARY\\DIXON\\FAT`` / ``...\\WATER``.
* 20203: ``gre_mullti_echo_10_TE_liver``, ten magnitude (``ORIGINAL\\PRIMARY\\M\\ND``,
  InstanceNumber 1-10) and ten phase images (``ORIGINAL\\PRIMARY\\P\\ND``, 11-20) in one
  series, EchoTime per image; phase with RescaleSlope 2, RescaleIntercept -4096.
* 20254: ``LMS IDEAL OPTIMISED LOW FLIP 6DYN``, six dynamics: magnitude series
  N0+2d and phase series N0+2d+1, InstanceNumber 1-6 = echo, EchoTime per echo.

Every image is marked synthetic (:func:`ukbmri.io.synthetic.mark_synthetic`: a
private block ``UKBMRI SYNTHETIC`` and ImageComments).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage

from ukbmri.io.atomic import atomic_path
from ukbmri.synth.anatomy import Phantom, build_phantom
from ukbmri.io.synthetic import mark_synthetic
from ukbmri.synth.dicomenc import SeriesEncoder, format_ds, make_uid
from ukbmri.synth.domain import randomise_scanner_fields
from ukbmri.synth.layout import (
    LiverScan,
    SliceGeometry,
    StationScan,
    dixon_scans,
    gre_scan,
    ideal_scan,
    session_start,
)
from ukbmri.synth.participant import Participant
from ukbmri.synth.quirks import Quirks
from ukbmri.synth.signal import (
    DIXON_TE_MS,
    FIELD_STRENGTH_T,
    GRE_GAIN,
    GRE_SIGMA,
    GRE_TE_MS,
    IDEAL_GAIN,
    IDEAL_SIGMA,
    IDEAL_TE_MS,
    ScannerFields,
    dixon_images,
    multiecho_images,
    sample_scanner_fields,
)

__all__ = ["write_participant", "zip_name", "MANIFEST_HEADER", "GRE_DESCRIPTION", "IDEAL_DESCRIPTION", "FIELDS_ORDER"]

log = logging.getLogger(__name__)

MANIFEST_HEADER = "filename,patientid,date,series discription,seriesid"
GRE_DESCRIPTION = "gre_mullti_echo_10_TE_liver"
IDEAL_DESCRIPTION = "LMS IDEAL OPTIMISED LOW FLIP 6DYN"
FIELDS_ORDER = (20201, 20203, 20254)
ZIP_LEVEL = 1
_DIXON_IMAGE_TYPE = {
    "in": ["ORIGINAL", "PRIMARY", "DIXON", "IN_PHASE"],
    "opp": ["ORIGINAL", "PRIMARY", "DIXON", "OPPOSED_PHASE"],
    "F": ["DERIVED", "PRIMARY", "DIXON", "FAT"],
    "W": ["DERIVED", "PRIMARY", "DIXON", "WATER"],
}
_VARYING = ("SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "SliceLocation", "EchoTime", "EchoNumbers")


def zip_name(eid: int, field: int, instance: int = 2, array: int = 0) -> str:
    return f"{eid}_{field}_{instance}_{array}.zip"


def _dt(d: datetime) -> tuple[str, str]:
    """DICOM DA and TM strings."""
    return d.strftime("%Y%m%d"), d.strftime("%H%M%S") + f".{d.microsecond:06d}"


def _manifest_date(d: datetime) -> str:
    return f"{d:%b} {d.day}, {d.year}"


@dataclass(frozen=True)
class _Session:
    """What every series of one participant's visit shares."""

    p: Participant
    patient_id: str
    study_uid: str
    frame_uid: str
    start: datetime
    instance: int

    def uid(self, *parts: object) -> str:
        return make_uid(self.p.seed, self.instance, *parts)


class _UkbZip:
    """An open bulk zip: DICOM members plus the manifest rows that describe them."""

    def __init__(self, zf: zipfile.ZipFile, session: _Session, quirks: Quirks, stamp: datetime) -> None:
        self.zf = zf
        self.session = session
        self.quirks = quirks
        self.stamp = (max(stamp.year, 1980), stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
        self.rows: list[str] = []
        self.n = 0

    def add(self, name: str, data: bytes, description: str, series_uid: str) -> None:
        zi = zipfile.ZipInfo(name, date_time=self.stamp)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi.create_system = 3
        zi.external_attr = 0o644 << 16
        self.zf.writestr(zi, data, compresslevel=ZIP_LEVEL)
        date = _manifest_date(self.session.start)
        self.rows.append(f"{name},{self.session.patient_id},{date},{description},{series_uid}")
        self.n += 1

    def close(self) -> None:
        q = self.quirks
        if q.no_manifest:
            return
        nl = "\r\n" if q.crlf_manifest else "\n"
        text = nl.join([MANIFEST_HEADER, *self.rows]) + nl
        if q.crlf_manifest:
            text += nl * 2
        zi = zipfile.ZipInfo("manifest.cvs" if q.misspelled_manifest else "manifest.csv", date_time=self.stamp)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi.create_system = 3
        zi.external_attr = 0o644 << 16
        self.zf.writestr(zi, text.encode("utf-8"), compresslevel=ZIP_LEVEL)


def _template(
    s: _Session,
    *,
    description: str,
    series_number: int,
    series_uid: str,
    image_type: list[str],
    acquired: datetime,
    geometry: SliceGeometry,
    rows: int,
    tr_ms: float,
    flip_deg: float,
    mr_type: str,
    sequence: str,
    echo_train: int,
    phase: bool = False,
) -> Dataset:
    ds = Dataset()
    study_da, study_tm = _dt(s.start)
    da, tm = _dt(acquired)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = image_type
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate, ds.StudyTime = study_da, study_tm
    ds.SeriesDate, ds.SeriesTime = da, tm
    ds.AcquisitionDate, ds.AcquisitionTime = da, tm
    ds.ContentDate, ds.ContentTime = da, tm
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "ukbmri synthetic^abdomen"
    ds.SeriesDescription = description
    ds.ManufacturerModelName = "Aera"
    ds.PatientName = s.patient_id
    ds.PatientID = s.patient_id
    ds.PatientBirthDate = ""
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SP"
    ds.MRAcquisitionType = mr_type
    ds.SequenceName = sequence
    ds.SliceThickness = format_ds(geometry.thickness_mm)
    ds.RepetitionTime = format_ds(tr_ms)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "63.676"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = format_ds(FIELD_STRENGTH_T)
    if geometry.spacing_mm is not None:
        ds.SpacingBetweenSlices = format_ds(geometry.spacing_mm)
    ds.EchoTrainLength = echo_train
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.SoftwareVersions = "syngo MR E11"
    ds.ProtocolName = description
    ds.FlipAngle = format_ds(flip_deg)
    ds.PatientPosition = "HFS"
    ds.InPlanePhaseEncodingDirection = "COL"  # anterior-posterior (the shorter FOV side)
    ds.StudyInstanceUID = s.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = s.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = geometry.cols
    ds.PixelSpacing = [format_ds(geometry.pixel_mm[0], 9), format_ds(geometry.pixel_mm[1], 9)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    mark_synthetic(ds)
    if phase:
        ds.WindowCenter, ds.WindowWidth = "0", "8192"
        ds.RescaleIntercept = "-4096"
        ds.RescaleSlope = "2"
        ds.RescaleType = "US"
    else:
        ds.WindowCenter, ds.WindowWidth = "600", "1400"
    return ds


def _image_values(sop: str, instance: int, geometry: SliceGeometry, z: float, te_ms: float, echo: int) -> dict:
    return {
        "SOPInstanceUID": sop,
        "InstanceNumber": instance,
        "ImagePositionPatient": [format_ds(geometry.x0), format_ds(geometry.y0), format_ds(z)],
        "SliceLocation": format_ds(z),
        "EchoTime": format_ds(te_ms),
        "EchoNumbers": echo,
    }


# -- 20201 ------------------------------------------------------------------------------
def _write_dixon(out: _UkbZip, s: _Session, phantom: Phantom, fields: ScannerFields, scans: list[StationScan], base: int, quirks: Quirks) -> None:
    cache: dict = {}
    for scan in scans:
        g = scan.geometry
        g_eval = g.with_extra_row() if scan.f_extra_row else g
        xs, ys, zs = g_eval.xs(), g_eval.ys(), g_eval.zs()
        labels = phantom.labels_grid(xs, ys, zs)
        rng = np.random.default_rng([base, 20201, scan.station, int(scan.rescan)])
        gain = float(rng.uniform(0.92, 1.08))
        coil = (gain * fields.coil(xs[None, None, :], ys[None, :, None], zs[:, None, None])).astype(np.float32)
        imgs = dixon_images(labels, phantom.tissues, coil, rng, ghost=scan.ghost)
        if quirks.fat_water_swap:
            imgs["W"], imgs["F"] = imgs["F"], imgs["W"]
        for kind in ("in", "opp", "F", "W"):
            px = imgs[kind] if (kind == "F" or not scan.f_extra_row) else imgs[kind][:, : g.rows]
            geom = g_eval if (kind == "F" and scan.f_extra_row) else g
            number = scan.series_numbers[kind]
            series_uid = s.uid(20201, "series", number)
            desc = f"{scan.description_stem}_{kind}"
            te = DIXON_TE_MS[1] if kind == "in" else DIXON_TE_MS[0]
            t = _template(
                s, description=desc, series_number=number, series_uid=series_uid, image_type=_DIXON_IMAGE_TYPE[kind],
                acquired=scan.acquired, geometry=geom, rows=px.shape[1], tr_ms=6.69, flip_deg=10.0, mr_type="3D",
                sequence="*fl3d2", echo_train=2,
            )
            enc = SeriesEncoder(t, _VARYING, cache=cache)
            for i, z in enumerate(g.z):
                sop = s.uid(20201, number, i + 1)
                data = enc.encode(px[i], _image_values(sop, i + 1, g, z, te, 1 if kind == "opp" else 2))
                out.add(f"{sop}.dcm", data, desc, series_uid)


# -- 20203 / 20254 -------------------------------------------------------------------------
def _liver_slice(phantom: Phantom, fields: ScannerFields, g: SliceGeometry, te_ms, rng, *, gain, sigma, shift=(0.0, 0.0)):
    xs, ys = g.xs(), g.ys()
    z = g.z[0]
    offsets = np.array([-1.0, 0.0, 1.0]) * g.thickness_mm / 3.0
    zsub = z + offsets + shift[1]
    labels = phantom.labels_grid(xs, ys + shift[0], zsub)  # (3, rows, cols)
    X, Y = xs[None, None, :], ys[None, :, None]
    b0 = fields.b0(X, Y, zsub[:, None, None])
    coil = fields.coil(xs[None, :], ys[:, None], z)
    phase0 = fields.receive_phase(xs[None, :], ys[:, None])
    return multiecho_images(labels, phantom.tissues, coil, b0, phase0, te_ms, rng, gain=gain, sigma=sigma)


def _noise_scale(p: Participant) -> float:
    """Domain randomisation: the participant's noise factor for the liver series (1 = ordinary)."""
    return 1.0 if p.domain is None else p.domain.noise_scale


def _write_gre(out: _UkbZip, s: _Session, phantom: Phantom, fields: ScannerFields, scan: LiverScan, base: int) -> None:
    g = scan.geometry
    rng = np.random.default_rng([base, 20203])
    mags, phases = _liver_slice(phantom, fields, g, GRE_TE_MS, rng, gain=GRE_GAIN, sigma=GRE_SIGMA * _noise_scale(s.p))
    number = scan.series_number
    series_uid = s.uid(20203, "series", number)
    common = dict(
        description=GRE_DESCRIPTION, series_number=number, series_uid=series_uid, acquired=scan.acquired[0],
        geometry=g, rows=g.rows, tr_ms=27.0, flip_deg=20.0, mr_type="2D", sequence="*fl2d10", echo_train=10,
    )
    for kind, images, offset in (("M", mags, 0), ("P", phases, len(GRE_TE_MS))):
        t = _template(s, image_type=["ORIGINAL", "PRIMARY", kind, "ND"], phase=kind == "P", **common)
        enc = SeriesEncoder(t, _VARYING)
        for e, te in enumerate(GRE_TE_MS):
            inst = offset + e + 1
            sop = s.uid(20203, number, inst)
            out.add(f"{sop}.dcm", enc.encode(images[e], _image_values(sop, inst, g, g.z[0], te, e + 1)), GRE_DESCRIPTION, series_uid)


def _write_ideal(out: _UkbZip, s: _Session, phantom: Phantom, fields: ScannerFields, scan: LiverScan, base: int) -> None:
    g = scan.geometry
    for d, acquired in enumerate(scan.acquired):
        rng = np.random.default_rng([base, 20254, d])
        shift = (float(rng.uniform(-1.0, 1.0)), float(rng.uniform(-2.0, 2.0)))  # breathing: (dy, dz) mm
        mags, phases = _liver_slice(phantom, fields, g, IDEAL_TE_MS, rng, gain=IDEAL_GAIN,
                                    sigma=IDEAL_SIGMA * _noise_scale(s.p), shift=shift)
        for kind, images, k in (("M", mags, 0), ("P", phases, 1)):
            number = scan.series_number + 2 * d + k
            series_uid = s.uid(20254, "series", number)
            t = _template(
                s, description=IDEAL_DESCRIPTION, series_number=number, series_uid=series_uid,
                image_type=["ORIGINAL", "PRIMARY", kind, "ND"], acquired=acquired, geometry=g, rows=g.rows,
                tr_ms=14.0, flip_deg=5.0, mr_type="2D", sequence="*fl2d6", echo_train=6, phase=kind == "P",
            )
            t.TemporalPositionIdentifier = d + 1
            t.NumberOfTemporalPositions = len(scan.acquired)
            enc = SeriesEncoder(t, _VARYING)
            for e, te in enumerate(IDEAL_TE_MS):
                sop = s.uid(20254, number, e + 1)
                out.add(f"{sop}.dcm", enc.encode(images[e], _image_values(sop, e + 1, g, g.z[0], te, e + 1)), IDEAL_DESCRIPTION, series_uid)


# -- participant -------------------------------------------------------------------------
def _file_fields(fields: tuple[int, ...], wrong_name: bool) -> dict[int, int]:
    """content field -> field used in the file name."""
    names = {f: f for f in fields}
    if not wrong_name:
        return names
    ordered = [f for f in FIELDS_ORDER if f in fields]
    if 20201 in ordered and 20203 in ordered:
        names[20201], names[20203] = 20203, 20201
    elif len(ordered) >= 2:
        a, b = ordered[:2]
        names[a], names[b] = b, a
    elif ordered:
        f = ordered[0]
        names[f] = FIELDS_ORDER[(FIELDS_ORDER.index(f) + 1) % len(FIELDS_ORDER)]
    return names


def write_participant(
    p: Participant,
    out_dir,
    *,
    fields: Iterable[int] = FIELDS_ORDER,
    quirks: Quirks = Quirks(),
    rng: np.random.Generator,
    instance: int = 2,
    phantom: Phantom | None = None,
) -> dict[int, Path]:
    """Write the participant's zips into ``out_dir``.

    Returns ``{field in the file name: path}``. Noise, coil and B0 fields come
    from ``rng`` (one draw seeds independent per-station streams, so quirks
    that add or drop a station leave the other stations' pixels unchanged).
    """
    fields = tuple(sorted(set(int(f) for f in fields)))
    unknown = [f for f in fields if f not in FIELDS_ORDER]
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; expected some of {FIELDS_ORDER}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    phantom = build_phantom(p) if phantom is None else phantom
    base = int(rng.integers(0, 2**63))
    lm = phantom.landmarks
    scanner = sample_scanner_fields(
        np.random.default_rng([base, 1]), (lm["x_body"], phantom.y_back - 120.0, lm["z_liver_centre"])
    )
    if p.domain is not None:
        scanner = randomise_scanner_fields(scanner, p.domain)
    scans = dixon_scans(p, quirks)
    session = _Session(
        p=p,
        patient_id=f"SYN{make_uid(p.seed, 'patient')[-10:]}",
        study_uid=make_uid(p.seed, instance, "study"),
        frame_uid=make_uid(p.seed, instance, "frame"),
        start=session_start(p, quirks),
        instance=instance,
    )
    names = _file_fields(fields, quirks.wrong_name_field)
    paths: dict[int, Path] = {}
    for field in fields:
        target = out_dir / zip_name(p.eid, names[field], instance)
        with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w") as zf:
            if field == 20201:
                out = _UkbZip(zf, session, quirks, session.start)
                _write_dixon(out, session, phantom, scanner, scans, base, quirks)
            elif field == 20203:
                scan = gre_scan(p, phantom, quirks)
                out = _UkbZip(zf, session, quirks, scan.acquired[0])
                _write_gre(out, session, phantom, scanner, scan, base)
            else:
                scan = ideal_scan(p, phantom, quirks)
                out = _UkbZip(zf, session, quirks, scan.acquired[0])
                _write_ideal(out, session, phantom, scanner, scan, base)
            out.close()
        log.debug("wrote %s (%d DICOM files, field %d content)", target.name, out.n, field)
        paths[names[field]] = target
    return paths
