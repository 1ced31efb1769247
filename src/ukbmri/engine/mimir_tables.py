"""MIMIR's own prediction files, from the participants table.

``OUT/<module folder name>/predictions.csv`` with MIMIR's columns (``name``,
``<target>_mean_in_<unit>``, ``<target>_variance_in_<unit>``), so scripts written
for MIMIR's output keep working.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ukbmri.engine.tables import write_table

__all__ = ["write_mimir_predictions"]


def write_mimir_predictions(table: pd.DataFrame, module_dirs: Sequence[str | os.PathLike[str]], out: Path) -> list[Path]:
    """One MIMIR ``predictions.csv`` per module (rows with a body image and predictions only)."""
    from ukbmri.engine.stages.body import ModuleRef, prediction_columns

    refs = [ModuleRef.of(d) for d in module_dirs if Path(d).is_dir()]
    columns = prediction_columns(refs)
    written = []
    rows = table[table["body_image"].notna()] if "body_image" in table else table.iloc[:0]
    for ref in refs:
        frame = {"name": rows["body_image"].astype(str).to_numpy()}
        have = True
        for name, unit in ref.targets:
            col = columns[(ref.name, name)]
            if col not in rows:
                have = False
                break
            frame[f"{name}_mean_in_{unit}"] = rows[col].to_numpy()
            frame[f"{name}_variance_in_{unit}"] = rows[f"{col}_variance"].to_numpy()
        if not have:
            continue
        df = pd.DataFrame(frame).dropna(subset=[c for c in frame if c != "name"], how="all")
        written += write_table(df, Path(out) / ref.name / "predictions", formats=("csv",))
    return written
