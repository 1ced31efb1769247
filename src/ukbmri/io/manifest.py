"""The manifest inside a UK Biobank zip: found by name, parsed robustly, advisory only.

UK Biobank zips carry ``manifest.csv`` (sometimes ``manifest.cvs``) listing the
DICOM members. Its header is unreliable (``series discription``), the ``date``
value contains a comma (``Jun 3, 2019``) that is not always quoted, line
endings may be CRLF and blank lines trail. :func:`parse_manifest` copes with all
of these; what it cannot repair it records in :attr:`Manifest.problems`
instead of raising, because the reader trusts the DICOM headers, not the
manifest.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Manifest", "find_manifest_member", "is_manifest_name", "normalise_column", "parse_manifest"]

#: normalised column name -> canonical name
_ALIASES: dict[str, str] = {
    "filename": "filename",
    "file_name": "filename",
    "file": "filename",
    "patientid": "patientid",
    "patient_id": "patientid",
    "date": "date",
    "series_description": "series_description",
    "series_discription": "series_description",
    "seriesdescription": "series_description",
    "seriesdiscription": "series_description",
    "description": "series_description",
    "seriesid": "seriesid",
    "series_id": "seriesid",
}


def normalise_column(name: str) -> str:
    """Canonical column name: lower case, runs of space/dash/underscore -> ``_``, aliases.

    Misspellings of "series description" (``discription``, ``descripton`` ...)
    map to ``series_description``.
    """
    key = re.sub(r"[\s\-_]+", "_", name.strip().lstrip("\ufeff").strip().lower()).strip("_")
    if key in _ALIASES:
        return _ALIASES[key]
    if key.startswith("series") and re.search(r"d[ei]s?cr?i", key):
        return "series_description"
    return key


def is_manifest_name(name: str) -> bool:
    """True for a member whose base name contains "manifest" (any case)."""
    base = re.split(r"[/\\]", name)[-1].lower()
    return "manifest" in base


def find_manifest_member(names: Iterable[str]) -> str | None:
    """The manifest member among ``names``: prefer ``.csv``/``.cvs`` names, else any "manifest"."""
    cands = [n for n in names if is_manifest_name(n)]
    if not cands:
        return None
    preferred = [n for n in cands if n.lower().endswith((".csv", ".cvs"))]
    return sorted(preferred or cands, key=lambda n: (n.count("/"), n))[0]


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest.

    Attributes
    ----------
    member:
        The zip member it was read from.
    columns:
        Canonical column names (``filename``, ``patientid``, ``date``,
        ``series_description``, ``seriesid``, others normalised).
    rows:
        One dict per non-blank data row, keyed by canonical column name.
    problems:
        Parse notes (rows with too few or too many fields that could not be repaired, ...).
    """

    member: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    problems: tuple[str, ...] = ()

    @property
    def filenames(self) -> tuple[str, ...]:
        """The ``filename`` column (empty when the manifest has no such column)."""
        if "filename" not in self.columns:
            return ()
        return tuple(r["filename"] for r in self.rows if r.get("filename"))

    def descriptions(self) -> dict[str, str]:
        """``filename -> series_description`` for rows that have both."""
        return {
            r["filename"]: r["series_description"]
            for r in self.rows
            if r.get("filename") and r.get("series_description") is not None
        }

    def __len__(self) -> int:
        return len(self.rows)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_manifest(data: bytes, *, member: str = "manifest.csv") -> Manifest:
    """Parse manifest bytes (see the module docstring for the quirks handled).

    Rows with more fields than the header are repaired by joining the extra
    fields into the ``date`` column (the one value that may hold a comma);
    rows that still do not fit are kept as far as they go and noted.
    """
    text = _decode(data)
    records = [r for r in csv.reader(io.StringIO(text, newline=""), skipinitialspace=False)]
    records = [r for r in records if any(c.strip() for c in r)]
    problems: list[str] = []
    if not records:
        return Manifest(member, (), (), ("manifest is empty",))
    header = [normalise_column(c) for c in records[0]]
    # a trailing empty header cell from a trailing comma is not a column
    while header and header[-1] == "":
        header.pop()
    columns = tuple(header)
    date_idx = columns.index("date") if "date" in columns else None
    rows: list[dict[str, str]] = []
    n_short = n_long = 0
    for rec in records[1:]:
        cells = [c.strip() for c in rec]
        while len(cells) > len(columns) and cells[-1] == "":
            cells.pop()  # trailing comma
        if len(cells) > len(columns):
            extra = len(cells) - len(columns)
            if date_idx is not None:
                joined = ", ".join(c.strip() for c in cells[date_idx : date_idx + extra + 1])
                cells = cells[:date_idx] + [joined] + cells[date_idx + extra + 1 :]
            else:
                n_long += 1
                cells = cells[: len(columns)]
        elif len(cells) < len(columns):
            n_short += 1
        rows.append({c: v for c, v in zip(columns, cells, strict=False)})
    if n_long:
        problems.append(f"manifest: {n_long} row(s) have more fields than the header and no date column to repair")
    if n_short:
        problems.append(f"manifest: {n_short} row(s) have fewer fields than the header")
    if "filename" not in columns:
        problems.append(f"manifest: no filename column (header {', '.join(columns)})")
    return Manifest(member, columns, tuple(rows), tuple(problems))
