"""Which UK Biobank field a set of series is, from their descriptions, and what looks off.

Detection uses normalised series descriptions (ml4h convention: lower case,
spaces -> ``_``):

* 20201 (Dixon neck-to-knee): "dixon" in it and a Dixon suffix (``_in``, ``_opp``, ``_F``, ``_W``)
* 20203 (multi-echo GRE liver): ``gre_mullti_echo_10_te_liver`` (also ``gre_multi_echo_10_te_liver``)
* 20254 (liver IDEAL): contains ``ideal``

:func:`field_problems` then lists anomalies (station count, re-scanned
stations, W/F size mismatch, echo / dynamic counts). Detection only: the
preprocessing stages decide what is fatal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ukbmri.errors import UnknownProtocolError
from ukbmri.types import Series

__all__ = [
    "normalise_description",
    "dixon_kind",
    "field_of_description",
    "detect_field",
    "field_problems",
    "dixon_stations",
    "GRE_DESCRIPTIONS",
    "max_matrix",
]

GRE_DESCRIPTIONS = ("gre_mullti_echo_10_te_liver", "gre_multi_echo_10_te_liver")
_DIXON_SUFFIX = {"in": "in", "opp": "opp", "f": "F", "w": "W"}


#: largest Rows x Columns accepted per field: twice the largest UK Biobank matrix
#: (20201: 174 x 224; 20203: 160 x 160 class; 20254: 232 x 256), so a header claiming
#: 65535 x 65535 is refused before anything is allocated
_MAX_MATRIX = {20201: (512, 512), 20203: (512, 512), 20254: (512, 512)}
_MAX_MATRIX_OTHER = (4096, 4096)


def max_matrix(field: int | None) -> tuple[int, int]:
    """The largest (Rows, Columns) accepted for an image of ``field`` (4096 x 4096 for an unknown field)."""
    return _MAX_MATRIX.get(field, _MAX_MATRIX_OTHER) if field is not None else _MAX_MATRIX_OTHER


def normalise_description(desc: str) -> str:
    """Lower case, surrounding blanks removed, spaces -> ``_`` (ml4h convention)."""
    return str(desc).strip().lower().replace(" ", "_")


def dixon_kind(desc: str) -> str | None:
    """``"in"`` / ``"opp"`` / ``"F"`` / ``"W"`` from a Dixon description's suffix, else ``None``.

    >>> dixon_kind("Dixon_BH_17s_W"), dixon_kind("dixon_nobh_opp"), dixon_kind("Dixon_noBH")
    ('W', 'opp', None)
    """
    norm = normalise_description(desc)
    if "_" not in norm:
        return None
    return _DIXON_SUFFIX.get(norm.rsplit("_", 1)[1])


def field_of_description(desc: str) -> int | None:
    """The field a single series description belongs to, or ``None``."""
    norm = normalise_description(desc)
    if "dixon" in norm and dixon_kind(norm) is not None:
        return 20201
    if any(g in norm for g in GRE_DESCRIPTIONS):
        return 20203
    if "ideal" in norm:
        return 20254
    return None


def detect_field(series: Sequence[Series], *, path: str | None = None) -> tuple[int, list[str]]:
    """The field of a zip's series and notes when more than one field appears.

    The field with the most matching images wins (ties: most series, then the lower
    field number). Raises :class:`UnknownProtocolError` when no series matches.
    """
    images: Counter[int] = Counter()
    counts: Counter[int] = Counter()
    for s in series:
        f = field_of_description(s.description)
        if f is not None:
            images[f] += s.n_images
            counts[f] += 1
    if not counts:
        descs = sorted({s.description for s in series})
        shown = ", ".join(repr(d) for d in descs[:6]) + (" ..." if len(descs) > 6 else "")
        raise UnknownProtocolError(
            "series descriptions match no known field",
            path=path,
            expected="Dixon_*_{in,opp,F,W} (20201), gre_mullti_echo_10_TE_liver (20203) or *IDEAL* (20254)",
            found=shown or "no series",
        )
    best = sorted(counts, key=lambda f: (-images[f], -counts[f], f))[0]
    problems = []
    if len(counts) > 1:
        others = ", ".join(f"{f} ({counts[f]} series)" for f in sorted(counts) if f != best)
        problems.append(f"series of more than one field: detected {best} ({counts[best]} series), also {others}")
    unmatched = [s for s in series if field_of_description(s.description) is None]
    if unmatched:
        descs = sorted({s.description for s in unmatched})
        problems.append(f"{len(unmatched)} series not of field {best}: {', '.join(repr(d) for d in descs[:6])}")
    return best, problems


# -- 20201 stations -------------------------------------------------------------
def _z_interval(s: Series) -> tuple[float, float]:
    proj = np.asarray(s.positions, dtype=float) @ s.normal
    return float(proj.min()), float(proj.max())


def _same_station(a: tuple[float, float], b: tuple[float, float]) -> bool:
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    shorter = min(a[1] - a[0], b[1] - b[0])
    if shorter <= 1e-6:  # single-slice series: same station when the centres are within 1 mm
        return abs((a[0] + a[1]) / 2 - (b[0] + b[1]) / 2) <= 1.0
    return overlap > 0.5 * shorter


def dixon_stations(series: Iterable[Series]) -> list[list[Series]]:
    """Dixon series clustered into stations by slice-position overlap, head (largest z) first.

    Series of one station cover the same z range; adjacent stations overlap
    by only ~15-20 %, so "more than half of the shorter extent overlaps" separates
    them while keeping a re-scan (same description, new series number) together.
    """
    dixon = [s for s in series if field_of_description(s.description) == 20201]
    clusters: list[tuple[tuple[float, float], list[Series]]] = []
    for s in sorted(dixon, key=lambda s: (-sum(_z_interval(s)), s.series_number)):
        iv = _z_interval(s)
        for rep, members in clusters:
            if _same_station(rep, iv):
                members.append(s)
                break
        else:
            clusters.append((iv, [s]))
    clusters.sort(key=lambda c: -(c[0][0] + c[0][1]))
    return [sorted(m, key=lambda s: s.series_number) for _, m in clusters]


def _problems_20201(series: Sequence[Series]) -> list[str]:
    out: list[str] = []
    stations = dixon_stations(series)
    if len(stations) != 6:
        out.append(f"20201: {len(stations)} stations found, expected 6")
    for i, members in enumerate(stations, start=1):
        by_kind: dict[str, list[Series]] = {}
        for s in members:
            by_kind.setdefault(dixon_kind(s.description) or "?", []).append(s)
        missing = [k for k in ("in", "opp", "F", "W") if k not in by_kind]
        if missing:
            out.append(f"20201: station {i} lacks the {'/'.join(missing)} series")
        repeats = [by_kind[k] for k in ("W", "F", "in", "opp") if len(by_kind.get(k, ())) > 1]
        if repeats:
            v = repeats[0]
            nums = ", ".join(str(s.series_number) for s in v)
            out.append(
                f"20201: station {i} acquired {len(v)} times ({v[0].description} is series {nums}); "
                "the most recent should be kept"
            )
        ws, fs = by_kind.get("W", []), by_kind.get("F", [])
        for w, f in zip(ws, fs, strict=False):
            if w.shape != f.shape or w.n_images != f.n_images:
                out.append(
                    f"20201: station {i} W/F size mismatch: W series {w.series_number} is "
                    f"{w.n_images}x{w.shape[0]}x{w.shape[1]}, F series {f.series_number} is "
                    f"{f.n_images}x{f.shape[0]}x{f.shape[1]}"
                )
    return out


def _problems_20203(series: Sequence[Series]) -> list[str]:
    gre = [s for s in series if field_of_description(s.description) == 20203]
    mag = sum(s.n_images for s in gre if s.image_kind == "magnitude")
    phase = sum(s.n_images for s in gre if s.image_kind == "phase")
    out = []
    if mag != 10:
        out.append(f"20203: {mag} magnitude echo images, expected 10")
    if phase not in (0, mag):
        out.append(f"20203: {phase} phase images but {mag} magnitude images")
    return out


def _problems_20254(series: Sequence[Series]) -> list[str]:
    ideal = [s for s in series if field_of_description(s.description) == 20254]
    mag = [s for s in ideal if s.image_kind == "magnitude"]
    phase = [s for s in ideal if s.image_kind == "phase"]
    out = []
    if len(mag) != 6:
        out.append(f"20254: {len(mag)} magnitude dynamics, expected 6")
    if phase and len(phase) != len(mag):
        out.append(f"20254: {len(phase)} phase dynamics but {len(mag)} magnitude dynamics")
    bad = [s for s in mag + phase if s.n_images != 6]
    if bad:
        detail = ", ".join(f"series {s.series_number} has {s.n_images}" for s in bad[:4])
        out.append(f"20254: dynamics without 6 echoes ({detail})")
    return out


def field_problems(field: int, series: Sequence[Series]) -> list[str]:
    """Human-readable anomalies of a zip's series for its field (empty when all looks normal)."""
    if field == 20201:
        return _problems_20201(series)
    if field == 20203:
        return _problems_20203(series)
    if field == 20254:
        return _problems_20254(series)
    return []
