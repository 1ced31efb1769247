"""DICOM image headers -> :class:`~ukbmri.types.Series`, and stacking their pixels.

Grouping key (the contract): (SeriesNumber, SeriesInstanceUID, image kind), so
magnitude and phase images sharing a series number become two series. Images
are ordered by InstanceNumber; a series with mixed shapes, pixel spacings or
orientations, or a repeated InstanceNumber, raises :class:`SeriesError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ukbmri.errors import PixelDataError, SeriesError
from ukbmri.io.dicom import ImageHeader, PixelRef, PixelSpec, image_kind
from ukbmri.io.fields import dixon_kind, max_matrix
from ukbmri.io.zipsource import ZipLimits, ZipSource
from ukbmri.types import Series

__all__ = ["group_series", "stack_pixels", "with_pixels", "check_matrix", "check_pixel_budget", "PixelSelector"]

PixelSelector = bool | Callable[[Series], bool]


def group_series(
    headers: Sequence[ImageHeader], *, source: str, path: str | None = None
) -> tuple[list[tuple[Series, list[ImageHeader]]], list[str]]:
    """Group image headers into header-only :class:`Series` (with their headers, in order).

    Raises :class:`SeriesError` for a series with mixed shapes, pixel spacings or
    orientations, or a repeated InstanceNumber. Returns the series sorted by
    (series_number, image_kind, uid) and notes (mixed descriptions, one series
    number with several UIDs).
    """
    groups: dict[tuple[int, str, str], list[ImageHeader]] = {}
    for h in headers:
        kind = image_kind(h.image_type, dixon=dixon_kind(h.description) is not None)
        groups.setdefault((h.series_number, h.series_uid, kind), []).append(h)
    problems: list[str] = []
    out: list[tuple[Series, list[ImageHeader]]] = []
    for (number, uid, kind), hs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        hs.sort(key=lambda h: (h.instance_number, h.member))
        out.append((_make_series(number, uid, kind, hs, source=source, path=path, problems=problems), hs))
    uids: dict[int, set[str]] = {}
    for (number, uid, _), _hs in groups.items():
        uids.setdefault(number, set()).add(uid)
    for number, us in sorted(uids.items()):
        if len(us) > 1:
            problems.append(f"series number {number} is shared by {len(us)} SeriesInstanceUIDs")
    return out, problems


def _make_series(number, uid, kind, hs: list[ImageHeader], *, source, path, problems) -> Series:
    first = hs[0]
    where = f"series {number} ({first.description!r}, {kind})"
    shapes = {(h.rows, h.columns) for h in hs}
    if len(shapes) > 1:
        raise SeriesError(
            f"{where} mixes image sizes", path=path, expected="one rows x columns", found=sorted(shapes)
        )
    inst = np.array([h.instance_number for h in hs], dtype=np.int64)
    dup = inst[1:][inst[1:] == inst[:-1]]
    if dup.size:
        raise SeriesError(
            f"{where} repeats InstanceNumber {int(dup[0])}",
            path=path,
            member=next(h.member for h in hs[1:] if h.instance_number == dup[0]),
        )
    spacing = np.array([h.pixel_spacing for h in hs])
    if np.ptp(spacing, axis=0).max() > 1e-4 * max(1.0, float(np.abs(spacing).max())):
        raise SeriesError(f"{where} mixes pixel spacings", path=path, found=sorted({h.pixel_spacing for h in hs}))
    orient = np.array([h.orientation for h in hs])
    if np.ptp(orient, axis=0).max() > 1e-3:
        raise SeriesError(f"{where} mixes image orientations", path=path)
    descs = {h.description for h in hs}
    if len(descs) > 1:
        problems.append(f"{where} mixes descriptions {sorted(descs)}")
    times = [h.acquired for h in hs if h.acquired is not None]
    return Series(
        source=source,
        series_number=number,
        series_uid=uid,
        description=first.description,
        image_kind=kind,
        image_type=first.image_type,
        acquired=min(times) if times else None,
        members=tuple(h.member for h in hs),
        instance_numbers=inst,
        positions=np.array([h.position for h in hs], dtype=np.float64).reshape(-1, 3),
        orientation=np.array(first.orientation, dtype=np.float64),
        pixel_spacing=first.pixel_spacing,
        shape=(first.rows, first.columns),
        echo_times_ms=np.array([h.echo_time_ms for h in hs], dtype=np.float64),
        slice_thickness=first.slice_thickness,
        repetition_time_ms=first.repetition_time_ms,
        flip_angle_deg=first.flip_angle_deg,
        field_strength_t=first.field_strength_t,
    )


def check_matrix(field: int, headers: Sequence[ImageHeader], *, path: str | None) -> None:
    """:class:`PixelDataError` naming the first image whose Rows x Columns is beyond what ``field`` uses."""
    limit = max_matrix(field)
    for h in headers:
        if h.rows > limit[0] or h.columns > limit[1]:
            raise PixelDataError(
                f"image matrix larger than field {field} uses",
                path=path,
                member=h.member,
                expected=f"at most {limit[0]} x {limit[1]}",
                found=f"{h.rows} x {h.columns}",
            )


def check_pixel_budget(
    grouped: list[tuple[Series, list[ImageHeader]]], pixels, limits: ZipLimits, *, path: str | None
) -> None:
    """:class:`PixelDataError` when the series to decode would need more than ``limits.max_pixel_bytes``.

    Checked from the headers, before any array is allocated.
    """
    total = 0
    for s, hs in grouped:
        if pixels(s) if callable(pixels) else bool(pixels):
            total += len(hs) * hs[0].rows * hs[0].columns * 4
            if total > limits.max_pixel_bytes:
                raise PixelDataError(
                    "decoded pixels would exceed the memory budget",
                    path=path,
                    member=hs[0].member,
                    expected=f"at most {limits.max_pixel_bytes} bytes of float32 pixels",
                    found=f"more than {total} bytes (series {s.series_number}: {len(hs)} x {hs[0].rows} x "
                    f"{hs[0].columns})",
                )


def stack_pixels(hs: Sequence[ImageHeader], refs: dict[str, PixelRef]) -> np.ndarray:
    """(n, rows, cols) float32 with each image's RescaleSlope/Intercept applied."""
    rows, cols = hs[0].rows, hs[0].columns
    for h in hs:  # before allocating: a header claiming a huge matrix has too few bytes behind it
        refs[h.member].check_length()
    out = np.empty((len(hs), rows, cols), dtype=np.float32)
    for i, h in enumerate(hs):
        raw = refs[h.member].decode()
        plane = out[i]
        plane[...] = raw
        if h.slope != 1.0:
            plane *= np.float32(h.slope)
        if h.intercept != 0.0:
            plane += np.float32(h.intercept)
    return out


def with_pixels(
    grouped: list[tuple[Series, list[ImageHeader]]],
    store: dict[str, PixelRef | PixelSpec],
    pixels: PixelSelector,
    src: ZipSource | None = None,
) -> list[Series]:
    """Decode the chosen series; a :class:`PixelSpec` is bound to its member's bytes (read now from ``src``)."""
    out = []
    for s, hs in grouped:
        want = pixels(s) if callable(pixels) else bool(pixels)
        if want:
            refs = {}
            for h in hs:
                v = store[h.member]
                if isinstance(v, PixelSpec):
                    assert src is not None
                    v = v.bind(src.read(h.member), path=str(src.path), member=h.member)
                refs[h.member] = v
            s = s.with_pixels(stack_pixels(hs, refs))
        for h in hs:  # release member bytes as soon as their series is done
            store.pop(h.member, None)
        out.append(s)
    return out
