"""Quality checks on the inputs a network sees and on the numbers it returns.

Every check returns a list of :class:`QcFinding` (empty: nothing to report).
A *fatal* finding means the input is not an image of a body (blank, constant,
pure noise, no echo data): the engine writes no network numbers for the
participant and records the finding's ``detail`` in the failures ledger. A
non-fatal finding becomes a flag on the participant's row. Flag names, rules
and thresholds are listed in ``docs/qc_flags.md``.

The rules come from MR physics, anatomy and noise statistics, not from the
synthetic phantoms:

* *noise-like*: a real MR image of a body is dominated by structures much
  larger than a voxel (body against air, organs), so intensities a few
  centimetres apart are strongly correlated. Pure (Rician / Gaussian) noise,
  even after interpolation, is uncorrelated beyond a few voxels. The check is
  the Pearson correlation of intensities :data:`STRUCTURE_LAG_MM` apart along
  each in-plane axis.
* *body mask*: Otsu threshold of ``W + F`` (like MIMIR's body mask); an adult
  neck-to-knee scan holds a body of tens of litres that fills the scanned
  head-foot range.
* *water / fat contrast*: a body holds lean tissue (water-dominant: muscle,
  organs) and adipose tissue (fat-dominant: subcutaneous fat, marrow).
* *fat-water swap*: the subcutaneous layer (the body's outer centimetre) is
  adipose tissue, so it has a higher fat fraction than the body's interior; a
  swap inverts that. Checked per head-foot slab, so a swap confined to one
  station is found too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ukbmri.types import Volume

__all__ = [
    "QcFinding",
    "check_body_volumes",
    "check_body_image",
    "check_multiecho",
    "FLAGS",
    "raise_if_fatal",
    "STRUCTURE_LAG_MM",
    "MIN_STRUCTURE_CORRELATION",
]

#: distance (mm) at which intensities of a real MR image are still correlated
STRUCTURE_LAG_MM = 20.0
#: below this correlation at :data:`STRUCTURE_LAG_MM` (every in-plane axis) an image is noise-like
MIN_STRUCTURE_CORRELATION = 0.25
#: predictions further than this many training standard deviations from the training mean are flagged
TRAINING_RANGE_K = 4.0
#: expected number of 20201 stations, and the fewest that still make a neck-to-knee scan
EXPECTED_STATIONS = 6
MIN_STATIONS = 5
#: adult neck-to-knee body volume (litres) outside which the body mask is implausible
BODY_VOLUME_L = (15.0, 250.0)
#: a slice holds body when its mask cross-section is at least this (cm^2; two legs at the knee ~ 150 cm^2)
MIN_SECTION_CM2 = 40.0
#: fraction of the scanned head-foot range that a neck-to-knee body fills at least
MIN_BODY_COVERAGE = 0.6
#: fractions of body voxels that are water-dominant (FF < 30 %) / fat-dominant (FF > 70 %) at least
MIN_TISSUE_FRACTION = 0.02
#: head-foot slab length (mm) of the per-slab fat-water swap check
SWAP_SLAB_MM = 100.0
#: in-plane depth (mm) of the body's outer layer (skin and subcutaneous fat) in the swap check
SHELL_MM = 9.0
#: fat-fraction difference (outer layer minus interior, as a fraction) that makes a slab's vote count
SWAP_MARGIN = 0.1

#: flag name -> (fatal, one-line meaning); the documentation (docs/qc_flags.md) lists the same
FLAGS: dict[str, tuple[bool, str]] = {
    "body_input_nonfinite": (True, "water or fat volume holds NaN or inf"),
    "body_input_blank": (True, "water + fat is zero everywhere"),
    "body_input_constant": (True, "water + fat has one value everywhere"),
    "body_water_blank": (True, "the water volume is zero or constant everywhere"),
    "body_fat_blank": (True, "the fat volume is zero or constant everywhere"),
    "body_input_noise": (True, "no spatial structure: intensities 2 cm apart are uncorrelated"),
    "body_wf_identical": (True, "water and fat volumes are the same image"),
    "body_station_missing": (False, "fewer than 6 stations were fused (fatal below 5)"),
    "body_station_rescanned": (False, "a station was acquired twice; the most recent was used"),
    "body_station_gap": (False, "consecutive stations do not overlap (a gap of zeros)"),
    "body_wf_size_mismatch": (False, "water and fat of a station differ in size; cropped"),
    "body_mask_implausible": (False, "body mask volume or head-foot coverage unlike a neck-to-knee scan"),
    "body_wf_contrast_implausible": (False, "no water-dominant or no fat-dominant tissue in the body"),
    "body_fat_water_swap": (False, "water and fat appear swapped (outer layer leaner than the interior)"),
    "body_fat_water_swap_partial": (False, "water and fat appear swapped in part of the head-foot range"),
    "body_image_invalid": (True, "the 2D image is not (3, 256, 256) uint8"),
    "body_image_blank": (True, "a channel of the 2D image is constant (blank input)"),
    "body_image_noise": (True, "the 2D image has no spatial structure"),
    "liver_input_nonfinite": (True, "echo images hold NaN or inf"),
    "liver_input_blank": (True, "all echo images are zero"),
    "liver_input_constant": (True, "all echo images have one value"),
    "liver_echo_blank": (True, "one echo image is zero or constant"),
    "liver_input_noise": (True, "echo images have no spatial structure"),
    "liver_echo_decay_implausible": (False, "signal rises with echo time (magnitude should decay)"),
    "liver_saturated": (False, "many pixels at the largest stored value (clipped signal)"),
    "pred_nonfinite": (False, "a prediction or its interval is NaN or inf"),
    "pred_outside_training_range": (False, "prediction beyond the module's training mean +- 4 SD"),
    "pred_physically_impossible": (False, "prediction outside the physical range (negative volume, ...)"),
    "pred_interval_uninformative": (False, "interval wider than the training population's 95 % range"),
}


@dataclass(frozen=True)
class QcFinding:
    """One quality-check result for one participant."""

    flag: str  #: a name listed in :data:`FLAGS` (``body_...``, ``liver_...``, ``pred_...``)
    fatal: bool  #: True: no network numbers for this participant (a ledger row with ``detail``)
    detail: str  #: one line, specific (measured vs expected)

    def __post_init__(self) -> None:
        if self.flag not in FLAGS:
            raise ValueError(f"undocumented QC flag {self.flag!r}")


def _finding(flag: str, detail: str, fatal: bool | None = None) -> QcFinding:
    return QcFinding(flag, FLAGS[flag][0] if fatal is None else fatal, detail)


def raise_if_fatal(findings: Sequence[QcFinding], *, path=None) -> None:
    """Raise :class:`~ukbmri.errors.QualityCheckError` for the first fatal finding (``flag: detail``)."""
    from ukbmri.errors import QualityCheckError

    for x in findings:
        if x.fatal:
            raise QualityCheckError(f"{x.flag}: {x.detail}", path=path)


# -- statistics ------------------------------------------------------------------------
def lag_correlation(a: np.ndarray, axis: int, lag: int, support: np.ndarray | None = None) -> float:
    """Pearson correlation of ``a`` with itself shifted by ``lag`` along ``axis`` (0 for no variance).

    With ``support`` (a boolean array like ``a``), only pairs with both voxels in it count.
    """
    n = a.shape[axis]
    if n < 2:
        return 0.0
    lag = int(max(1, min(lag, n - 1)))
    x = np.take(a, np.arange(0, n - lag), axis=axis).astype(np.float64).ravel()
    y = np.take(a, np.arange(lag, n), axis=axis).astype(np.float64).ravel()
    if support is not None:
        keep = (np.take(support, np.arange(0, n - lag), axis=axis) & np.take(support, np.arange(lag, n), axis=axis))
        keep = keep.ravel()
        x, y = x[keep], y[keep]
    if x.size < 2:
        return 0.0
    x -= x.mean()
    y -= y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else 0.0


def _structure(
    a: np.ndarray, spacing: Sequence[float], axes: Sequence[int], support: np.ndarray | None = None
) -> tuple[float, list[float]]:
    """Largest correlation at :data:`STRUCTURE_LAG_MM` over ``axes`` and the per-axis values."""
    cs = [lag_correlation(a, ax, round(STRUCTURE_LAG_MM / float(spacing[ax])), support) for ax in axes]
    return max(cs), cs


def _flat(a: np.ndarray) -> tuple[bool, float]:
    """Whether the non-zero values of ``a`` are (nearly) one value, and that value.

    Zeros are left out: fusion fills the grid outside the stations' fields of
    view with zeros, so a constant scan is constant only inside them.
    """
    v = a[a != 0]
    if v.size == 0:
        return True, 0.0
    lo, mid, hi = np.percentile(v, [1.0, 50.0, 99.0])
    return bool(hi - lo <= 1e-3 * abs(mid)), float(mid)


def _subsample(v: Volume, steps: tuple[int, int, int]) -> tuple[np.ndarray, tuple[float, float, float]]:
    st = tuple(max(1, min(s, n // 16 if n >= 32 else 1)) for s, n in zip(steps, v.shape, strict=True))
    a = v.array[:: st[0], :: st[1], :: st[2]]
    return a, tuple(float(sp) * s for sp, s in zip(v.spacing, st, strict=True))


# -- body volumes ------------------------------------------------------------------------
_WARNING_RULES = (
    ("body_station_rescanned", re.compile(r"duplicate station|re-?scan", re.I)),
    ("body_wf_size_mismatch", re.compile(r"differ in size|size mismatch|cropped", re.I)),
    ("body_station_gap", re.compile(r"no overlap between stations|gap of", re.I)),
)
_MISSING_RE = re.compile(r"only (\d+) of (\d+) stations", re.I)


def check_body_volumes(
    water: Volume,
    fat: Volume,
    *,
    stations: int,
    warnings: Sequence[str] = (),
    swap_suspected: bool = False,
) -> list[QcFinding]:
    """Checks of fused 20201 water / fat volumes ``(LR, AP, z)`` before the 2D image is made.

    ``stations``, ``warnings`` and ``swap_suspected`` are
    :class:`~ukbmri.preprocess.body.BodyResult`'s fields. Returns the findings,
    fatal ones first; once a fatal finding on the pixels is made, the pixel
    checks stop (a blank image has no mask to check).
    """
    out: list[QcFinding] = []
    out += _station_findings(stations, warnings)
    w = np.asarray(water.array)
    f = np.asarray(fat.array)
    if w.shape != f.shape:
        out.insert(0, _finding("body_wf_size_mismatch", f"water {w.shape} and fat {f.shape} volumes differ", True))
        return out
    pixel = _pixel_findings(water, fat, w, f)
    out = [x for x in pixel if x.fatal] + [x for x in out if x.fatal] + [x for x in out if not x.fatal] + [
        x for x in pixel if not x.fatal
    ]
    if not any(x.fatal for x in pixel):
        swap, decided = _swap_findings(water, fat)
        if swap_suspected and not decided:
            swap = [_finding("body_fat_water_swap", "swap suspected by the preprocessing heuristic (outer layer's "
                             "fat fraction below the core's); the per-slab check found no clear slab")]
        out += swap
    return out


def _station_findings(stations: int, warnings: Sequence[str]) -> list[QcFinding]:
    out: list[QcFinding] = []
    n = int(stations)
    for w in warnings:
        m = _MISSING_RE.search(w)
        if m:
            n = min(n, int(m[1]))
    if n < EXPECTED_STATIONS:
        out.append(_finding(
            "body_station_missing", f"{n} of {EXPECTED_STATIONS} stations fused (at least {MIN_STATIONS} needed)",
            fatal=n < MIN_STATIONS,
        ))
    for flag, rx in _WARNING_RULES:
        hits = [w for w in warnings if rx.search(w)]
        if hits and not any(x.flag == flag for x in out):
            out.append(_finding(flag, _one_line(hits[0]) + (f" (+{len(hits) - 1} more)" if len(hits) > 1 else "")))
    return out


def _one_line(text: str, limit: int = 240) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= limit else t[: limit - 3] + "..."


def _otsu(a: np.ndarray) -> float:
    from ukbmri.preprocess.mimir2d import otsu_threshold

    return otsu_threshold(a)


def _pixel_findings(water: Volume, fat: Volume, w: np.ndarray, f: np.ndarray) -> list[QcFinding]:
    ws, sp = _subsample(water, (2, 2, 4))
    fs, _ = _subsample(fat, (2, 2, 4))
    ws = ws.astype(np.float64)
    fs = fs.astype(np.float64)
    if not (np.all(np.isfinite(ws)) and np.all(np.isfinite(fs))) or not (
        np.all(np.isfinite(w)) and np.all(np.isfinite(f))
    ):
        bad = int(np.count_nonzero(~np.isfinite(w)) + np.count_nonzero(~np.isfinite(f)))
        return [_finding("body_input_nonfinite", f"{bad} non-finite voxels in water/fat (expected none)")]
    s = ws + fs
    hi = float(np.abs(s).max())
    if hi == 0.0:
        return [_finding("body_input_blank", f"water + fat is 0 in all {w.size} voxels")]
    flat, value = _flat(s)
    if flat:
        return [_finding("body_input_constant", f"water + fat is {value:.6g} wherever it is not 0 (no contrast)")]
    out: list[QcFinding] = []
    for name, a, flag in (("water", ws, "body_water_blank"), ("fat", fs, "body_fat_blank")):
        flat, value = _flat(a)
        if flat:
            where = "everywhere" if value == 0 else "wherever it is not 0"
            out.append(_finding(flag, f"{name} volume is {value:.6g} {where} (expected tissue contrast)"))
    if out:
        return out
    best, cs = _structure(s, sp, (0, 1), support=s != 0)
    if best < MIN_STRUCTURE_CORRELATION:
        return [_finding(
            "body_input_noise",
            f"correlation of water + fat {STRUCTURE_LAG_MM:g} mm apart is {cs[0]:.2f} (LR), {cs[1]:.2f} (AP); "
            f"expected >= {MIN_STRUCTURE_CORRELATION} for anatomy",
        )]
    if np.allclose(ws, fs, rtol=1e-3, atol=1e-6 * max(abs(hi), 1.0)):
        return [_finding("body_wf_identical", "water and fat volumes are identical (fat fraction 50 % everywhere)")]
    return _mask_findings(ws, fs, s, sp)


def _mask_findings(ws: np.ndarray, fs: np.ndarray, s: np.ndarray, sp: tuple[float, float, float]) -> list[QcFinding]:
    out: list[QcFinding] = []
    mask = s >= _otsu(s)
    voxel_ml = sp[0] * sp[1] * sp[2] / 1000.0
    volume_l = float(mask.sum()) * voxel_ml / 1000.0
    section_cm2 = mask.sum(axis=(0, 1)) * sp[0] * sp[1] / 100.0
    coverage = float(np.mean(section_cm2 >= MIN_SECTION_CM2)) if section_cm2.size else 0.0
    problems = []
    if not BODY_VOLUME_L[0] <= volume_l <= BODY_VOLUME_L[1]:
        problems.append(f"body mask {volume_l:.1f} L (expected {BODY_VOLUME_L[0]:g}-{BODY_VOLUME_L[1]:g} L)")
    if coverage < MIN_BODY_COVERAGE:
        problems.append(
            f"body in {coverage:.0%} of the head-foot range (expected >= {MIN_BODY_COVERAGE:.0%} for neck to knee)"
        )
    if problems:
        out.append(_finding("body_mask_implausible", "; ".join(problems)))
    if mask.any():
        tot = ws[mask] + fs[mask]
        ff = np.divide(fs[mask], tot, out=np.full(tot.shape, 0.5), where=tot > 0)
        lean = float(np.mean(ff < 0.3))
        adipose = float(np.mean(ff > 0.7))
        if lean < MIN_TISSUE_FRACTION or adipose < MIN_TISSUE_FRACTION:
            out.append(_finding(
                "body_wf_contrast_implausible",
                f"water-dominant (FF < 30 %) {lean:.1%} and fat-dominant (FF > 70 %) {adipose:.1%} of the body mask "
                f"(expected each >= {MIN_TISSUE_FRACTION:.0%})",
            ))
    return out


def swap_profile(water: Volume, fat: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Per head-foot slab (:data:`SWAP_SLAB_MM`, feet first): ``ff_shell - ff_interior`` and its body voxels.

    The shell is the body mask's outer :data:`SHELL_MM` in-plane (skin and
    subcutaneous fat), the interior the rest of the mask (muscle, organs, bone,
    visceral fat). Fat fractions are signal-weighted (``sum F / sum (W + F)``).
    NaN where a slab has too little of either.
    """
    from scipy import ndimage

    w, sp = _subsample(water, (2, 2, 3))
    f, _ = _subsample(fat, (2, 2, 3))
    w = w.astype(np.float64)
    f = f.astype(np.float64)
    s = w + f
    if s.size == 0 or not np.any(s > 0):
        return np.array([]), np.array([])
    mask = s >= _otsu(s)
    r_shell = max(1, round(SHELL_MM / sp[0]))
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    inner = ndimage.binary_erosion(mask, plane, iterations=r_shell)
    shell = mask & ~inner
    core = inner
    nz = s.shape[2]
    n_slabs = max(1, round(nz * sp[2] / SWAP_SLAB_MM))
    edges = np.linspace(0, nz, n_slabs + 1).round().astype(int)
    diffs, counts = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sh, co = shell[:, :, a:b], core[:, :, a:b]
        counts.append(int(mask[:, :, a:b].sum()))
        if int(sh.sum()) < 50 or int(co.sum()) < 50:
            diffs.append(np.nan)
            continue
        fs_, ss_ = f[:, :, a:b], s[:, :, a:b]
        ff_shell = fs_[sh].sum() / ss_[sh].sum()
        diffs.append((ff_shell - fs_[co].sum() / ss_[co].sum()) + (ff_shell - 0.5))
    return np.asarray(diffs, dtype=np.float64), np.asarray(counts)


def _swap_findings(water: Volume, fat: Volume) -> tuple[list[QcFinding], bool]:
    """Slabs whose outer layer is leaner than the interior by >= :data:`SWAP_MARGIN` are inverted.

    Only confident slabs (``|ff_shell - ff_interior| >= SWAP_MARGIN``) vote: where the
    subcutaneous fat is thicker than the shell (hips, abdomen of women and obese
    people) both regions hold fat and the difference says little; thighs, neck and
    shoulders give clear differences. Most confident slabs inverted: a swap;
    some inverted among clearly normal ones: a partial (one-station) swap.
    Also returns whether any slab voted (False: the check cannot tell).
    """
    d, _ = swap_profile(water, fat)
    ok = np.isfinite(d)
    if not ok.any():
        return [], False
    conf = ok & (np.abs(np.where(ok, d, 0.0)) >= SWAP_MARGIN)
    inverted = conf & (d < 0)
    normal = conf & (d > 0)
    n_inv, n_norm = int(inverted.sum()), int(normal.sum())
    slabs = " ".join("." if not o else f"{v:+.2f}" for o, v in zip(ok, np.where(ok, d, 0.0), strict=True))
    where = (
        f"swap score (FF_outer - FF_interior) + (FF_outer - 0.5) per {SWAP_SLAB_MM:g} mm slab, feet to head: "
        f"[{slabs}] (expected > 0; slabs with |score| >= {SWAP_MARGIN:g} vote)"
    )
    if n_inv >= 2 and n_inv > n_norm:
        return [_finding("body_fat_water_swap", f"{n_inv} of {n_inv + n_norm} clear slabs inverted; {where}")], True
    if n_inv and n_norm >= 2:
        detail = f"{n_inv} of {n_inv + n_norm} clear slabs inverted; {where}"
        return [_finding("body_fat_water_swap_partial", detail)], True
    return [], bool(n_inv + n_norm >= 2)


# -- MIMIR 2D image ------------------------------------------------------------------------
def check_body_image(image: np.ndarray) -> list[QcFinding]:
    """Checks of a MIMIR ``(3, 256, 256)`` uint8 image (for inputs known only from a cache)."""
    a = np.asarray(image)
    if a.shape != (3, 256, 256) or a.dtype != np.uint8:
        return [_finding("body_image_invalid", f"image {a.shape} {a.dtype} (expected (3, 256, 256) uint8)")]
    out: list[QcFinding] = []
    for c, name in enumerate(("water", "fat")):
        ch = a[c]
        if int(ch.max()) == int(ch.min()):
            out.append(_finding("body_image_blank", f"{name} channel is {int(ch.max())} everywhere (blank input)"))
    if out:
        return out
    # 256 px spans ~500 mm across two side-by-side projections: ~8 px is STRUCTURE_LAG_MM
    cs = [max(lag_correlation(a[c].astype(np.float64), ax, 8) for ax in (0, 1)) for c in (0, 1)]
    if min(cs) < MIN_STRUCTURE_CORRELATION:
        return [_finding(
            "body_image_noise",
            f"correlation 8 px apart is {cs[0]:.2f} (water), {cs[1]:.2f} (fat); "
            f"expected >= {MIN_STRUCTURE_CORRELATION}",
        )]
    return out


# -- liver echoes ------------------------------------------------------------------------
def check_multiecho(magnitude: np.ndarray, *, what: str, echo_axis: int = -1) -> list[QcFinding]:
    """Checks of liver magnitude echoes ``(x, y[, z], echo)`` (``what`` names them in the details).

    ``echo_axis`` says where the echoes are when not last (``0`` for
    :attr:`ukbmri.preprocess.liver_tensors.EchoStack.images`, ``(C, rows, cols)``).

    Blank, constant, noise-like images or a blank echo are fatal; a signal that
    rises with echo time or a clipped (saturated) signal are flags.
    """
    m = np.moveaxis(np.asarray(magnitude), echo_axis, -1)
    if m.ndim not in (3, 4) or m.shape[-1] < 1 or m.size == 0:
        return [_finding("liver_input_blank", f"{what}: echo array of shape {m.shape} (expected (x, y[, z], echo))")]
    if not np.all(np.isfinite(m)):
        bad = int(np.count_nonzero(~np.isfinite(m)))
        return [_finding("liver_input_nonfinite", f"{what}: {bad} non-finite values (expected none)")]
    m = m.astype(np.float64, copy=False)
    lo, hi = float(m.min()), float(m.max())
    if lo == 0.0 and hi == 0.0:
        return [_finding("liver_input_blank", f"{what}: all {m.shape[-1]} echoes are 0 everywhere")]
    if hi - lo <= 1e-6 * max(abs(hi), abs(lo)):
        return [_finding("liver_input_constant", f"{what}: all echoes are {hi:.6g} everywhere")]
    echoes = np.moveaxis(m, -1, 0).reshape(m.shape[-1], m.shape[0], m.shape[1], -1)
    flat = echoes.reshape(len(echoes), -1)
    blank = [i + 1 for i in range(len(flat)) if float(flat[i].max()) == float(flat[i].min())]
    if blank:
        return [_finding("liver_echo_blank", f"{what}: echo(es) {blank} of {len(flat)} are constant (expected signal)")]
    first = echoes[0]
    # one in-plane pixel is 1.7-2.5 mm in UK Biobank liver protocols: 8 px ~ STRUCTURE_LAG_MM
    cs = [lag_correlation(first, ax, 8) for ax in (0, 1)]
    if max(cs) < MIN_STRUCTURE_CORRELATION:
        return [_finding(
            "liver_input_noise",
            f"{what}: correlation of echo 1 8 px apart is {cs[0]:.2f}, {cs[1]:.2f}; "
            f"expected >= {MIN_STRUCTURE_CORRELATION}",
        )]
    out: list[QcFinding] = []
    means = flat.mean(axis=1)
    if len(means) >= 3 and means[-1] > 1.5 * means[0]:
        out.append(_finding(
            "liver_echo_decay_implausible",
            f"{what}: mean signal of the last echo {means[-1]:.4g} vs first {means[0]:.4g} (expected decay with TE)",
        ))
    top = hi
    if top >= 4095 or top in (255, 65535):
        frac = float(np.mean(m == top))
        if frac > 0.01:
            out.append(_finding("liver_saturated", f"{what}: {frac:.1%} of pixels at the largest value {top:g}"))
    return out
