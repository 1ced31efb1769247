"""Real-world defects of UK Biobank zips that the synthetic writer can reproduce.

=========================  ==================================================================
quirk                      effect
=========================  ==================================================================
misspelled_manifest        the manifest is named ``manifest.cvs`` (every zip of the participant)
crlf_manifest              manifest lines end in CRLF, followed by trailing blank lines
no_manifest                no manifest at all
duplicate_station=K        20201 station K (1-6) acquired twice: the original has a motion
                           ghost, the re-scan (right after it, higher series numbers) is clean
rescan_across_midnight     with duplicate_station: the original is at 23:59:40, the re-scan
                           at 00:01:15 on the next date (string-comparing times picks wrong)
wf_size_mismatch=K         the F series of station K has one more row than W/in/opp
missing_station=K          20201 station K is absent
fat_water_swap             W and F pixel data swapped in every station (descriptions kept)
wrong_name_field           contents written under another field's file name: 20201 <-> 20203
                           when both are written (else the first two written fields swap; a
                           single field is named as the next one: 20201->20203->20254->20201)
=========================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["Quirks", "QUIRK_NAMES", "parse_quirk", "quirks_from_specs"]

N_STATIONS = 6


@dataclass(frozen=True)
class Quirks:
    """Which defects to put into one participant's zips (default: none)."""

    misspelled_manifest: bool = False  #: manifest.cvs
    crlf_manifest: bool = False
    no_manifest: bool = False
    duplicate_station: int | None = None  #: station 1..6 present twice (the re-scan is later)
    rescan_across_midnight: bool = False  #: the re-scan happens just after midnight (next date)
    wf_size_mismatch: int | None = None  #: station whose F series has one more row than W
    missing_station: int | None = None
    fat_water_swap: bool = False  #: W and F images swapped (all stations)
    wrong_name_field: bool = False  #: 20203 content written under a 20201 file name, etc.

    def __post_init__(self) -> None:
        for name in ("duplicate_station", "wf_size_mismatch", "missing_station"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= N_STATIONS):
                raise ValueError(f"{name} must be a station number 1..{N_STATIONS}, got {v!r}")
        if self.rescan_across_midnight and self.duplicate_station is None:
            raise ValueError("rescan_across_midnight needs duplicate_station")
        if self.missing_station is not None and self.missing_station in (self.duplicate_station, self.wf_size_mismatch):
            raise ValueError(f"station {self.missing_station} cannot be both missing and duplicated / resized")
        if self.no_manifest and (self.misspelled_manifest or self.crlf_manifest):
            raise ValueError("no_manifest excludes misspelled_manifest and crlf_manifest")

    @property
    def any(self) -> bool:
        return self != Quirks()

    def describe(self) -> str:
        """``name`` / ``name=value`` of the active quirks joined by ';' ('' when none)."""
        parts = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is True:
                parts.append(f.name)
            elif v not in (None, False):
                parts.append(f"{f.name}={v}")
        return ";".join(parts)

    def merged(self, other: Quirks) -> Quirks:
        """This set with every non-default value of ``other`` applied on top."""
        changes = {f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) not in (None, False)}
        return replace(self, **changes)


QUIRK_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Quirks))
_INT_QUIRKS = {"duplicate_station", "wf_size_mismatch", "missing_station"}


def parse_quirk(spec: str) -> tuple[dict[str, object], tuple[int, ...] | None]:
    """Parse ``NAME[=VALUE][@I[,J...]]`` into (field values, participant indices or None = all).

    Boolean quirks take no value (or ``=1/true/yes``); station quirks need ``=K``.
    Indices are 0-based positions in the cohort.
    """
    text = spec.strip()
    indices: tuple[int, ...] | None = None
    if "@" in text:
        text, at = text.split("@", 1)
        try:
            indices = tuple(int(t) for t in at.split(",") if t.strip())
        except ValueError:
            raise ValueError(f"bad participant index list in quirk {spec!r}") from None
        if not indices or min(indices) < 0:
            raise ValueError(f"bad participant index list in quirk {spec!r}")
    name, _, value = text.partition("=")
    name = name.strip()
    if name not in QUIRK_NAMES:
        raise ValueError(f"unknown quirk {name!r}; known: {', '.join(QUIRK_NAMES)}")
    if name in _INT_QUIRKS:
        try:
            return {name: int(value)}, indices
        except ValueError:
            raise ValueError(f"quirk {name} needs a station number: {name}=K") from None
    if value.strip().lower() not in ("", "1", "true", "yes"):
        raise ValueError(f"quirk {name} takes no value (got {value!r})")
    return {name: True}, indices


def quirks_from_specs(specs, n: int) -> dict[int, Quirks]:
    """Per-participant :class:`Quirks` (only indices with quirks) from CLI specs."""
    per: dict[int, dict[str, object]] = {}
    for spec in specs:
        values, idx = parse_quirk(spec)
        targets = range(n) if idx is None else idx
        for i in targets:
            if i >= n:
                raise ValueError(f"quirk {spec!r}: participant index {i} >= cohort size {n}")
            per.setdefault(i, {}).update(values)
    return {i: Quirks(**v) for i, v in sorted(per.items())}
