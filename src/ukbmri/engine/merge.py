"""``ukbmri merge``: shard output folders -> exactly the tables one run would write.

Each shard folder holds ``participants.parquet``, ``failures.csv`` and
``run.json`` from ``ukbmri run --shard I/N``. Merging checks that every shard
was made by the same ukbmri version with the same stage settings (weights
fingerprints, options), that the shards are ``0..N-1`` of one ``N`` with none
missing or repeated, and that no visit appears in two shards; then it
concatenates the tables and sorts them by (eid, instance), as one run does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ukbmri.engine.tables import KEY, write_table
from ukbmri.errors import InputError
from ukbmri.io.atomic import write_text

__all__ = ["MergeResult", "merge_runs"]


@dataclass
class MergeResult:
    table: pd.DataFrame
    failures: pd.DataFrame
    problems: list[str] = field(default_factory=list)


def _load(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    try:
        manifest = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        table = pd.read_parquet(folder / "participants.parquet")
        failures = pd.read_csv(folder / "failures.csv", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise InputError("not a finished ukbmri run folder", path=folder,
                         expected="run.json, participants.parquet and failures.csv", found=type(exc).__name__) from exc
    return manifest, table, failures


def merge_runs(folders: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> MergeResult:
    """Merge shard folders into ``out`` (see the module docstring); raises InputError when they don't fit."""
    folders = [Path(f) for f in folders]
    loaded = [_load(f) for f in folders]
    problems: list[str] = []
    ref_manifest = loaded[0][0]
    ref_settings = {k: v["fingerprint"] for k, v in ref_manifest["settings"].items()}
    ref_version = ref_manifest["versions"].get("ukbmri")
    shards: dict[int, Path] = {}
    counts = set()
    for folder, (m, table, _) in zip(folders, loaded):
        settings = {k: v["fingerprint"] for k, v in m["settings"].items()}
        if m["versions"].get("ukbmri") != ref_version:
            raise InputError("shards made by different ukbmri versions", path=folder,
                             expected=ref_version, found=m["versions"].get("ukbmri"))
        common = set(settings) & set(ref_settings)
        if any(settings[k] != ref_settings[k] for k in common):
            raise InputError("shards made with different settings (weights, options or stage versions)",
                             path=folder, expected=f"the settings of {folders[0]}")
        if list(table.columns) != list(loaded[0][1].columns) and set(settings) == set(ref_settings):
            raise InputError("shards have different columns", path=folder)
        if m.get("shard") is None:
            problems.append(f"{folder}: not a shard (run without --shard)")
            continue
        i, n = (int(x) for x in m["shard"].split("/"))
        counts.add(n)
        if i in shards:
            problems.append(f"shard {i}/{n} given twice: {shards[i]} and {folder}")
        shards[i] = folder
        if not m.get("complete", False):
            problems.append(f"{folder}: shard {i}/{n} did not finish (re-run it, then merge again)")
    if len(counts) > 1:
        raise InputError("shards of different splits", expected="one N in every --shard I/N", found=sorted(counts))
    if counts:
        n = counts.pop()
        missing = sorted(set(range(n)) - set(shards))
        if missing:
            problems.append(f"missing shard(s) {', '.join(f'{i}/{n}' for i in missing)}")
    columns = max((t.columns for _, t, _ in loaded), key=len)
    table = pd.concat([t.reindex(columns=columns) for _, t, _ in loaded], ignore_index=True)
    dup = table[table.duplicated(KEY, keep=False)]
    if len(dup):
        keys = sorted({(int(e), int(i)) for e, i in dup[KEY].itertuples(index=False)})
        problems.append(f"{len(keys)} visit(s) in more than one shard, e.g. {keys[:5]}; kept the first")
        table = table.drop_duplicates(KEY, keep="first")
    table = table.sort_values(KEY, kind="mergesort").reset_index(drop=True)
    for col, dtype in loaded[0][1].dtypes.items():
        table[col] = table[col].astype(dtype)
    failures = pd.concat([f for _, _, f in loaded], ignore_index=True).drop_duplicates()
    from ukbmri.engine.ledger import Failure
    from ukbmri.engine.tables import failures_frame

    rows = [Failure(input=r["input"], stage=r["stage"], error=r["error"], message=r["message"],
                    eid=_int(r["eid"]), instance=_int(r["instance"]), field=_int(r["field"]))
            for r in failures.to_dict("records")]
    failures = failures_frame(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "participants")
    write_table(failures, out / "failures", formats=("csv",))
    merged = dict(ref_manifest)
    merged.update({"merged_from": [str(f) for f in folders], "shard": None, "problems": problems,
                   "rows": len(table), "failures": len(failures),
                   "complete": all(m.get("complete", False) for m, _, _ in loaded) and not problems})
    write_text(out / "run.json", json.dumps(merged, indent=1, sort_keys=True, default=str))
    return MergeResult(table, failures, problems)


def _int(x: str) -> int | None:
    return int(x) if x not in ("", None) else None
