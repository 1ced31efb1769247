"""Write a whole synthetic cohort: every participant's zips plus ``truth.csv``.

Deterministic for a seed: participants are drawn from ``default_rng(seed)``
and participant ``i`` writes its pixels from its own stream
``default_rng([seed, i])``, so the bytes do not depend on the number of
worker processes or on the order in which participants finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from ukbmri.io.atomic import atomic_path
from ukbmri.synth.anatomy import build_phantom
from ukbmri.synth.participant import Participant, sample_participants
from ukbmri.synth.quirks import Quirks
from ukbmri.synth.truth import TRUTH_COLUMNS, truth_row
from ukbmri.synth.ukb_writer import FIELDS_ORDER, write_participant

__all__ = ["write_cohort", "write_one", "TRUTH_FILE"]

log = logging.getLogger(__name__)

TRUTH_FILE = "truth.csv"


def write_one(
    p: Participant,
    out_dir,
    *,
    seed: int,
    index: int,
    fields: Iterable[int] = FIELDS_ORDER,
    quirks: Quirks = Quirks(),
    instance: int = 2,
) -> dict[str, object]:
    """Write one participant of a cohort; returns its truth row (with ``quirks``)."""
    phantom = build_phantom(p)
    rng = np.random.default_rng([int(seed), int(index)])
    write_participant(p, out_dir, fields=fields, quirks=quirks, rng=rng, instance=instance, phantom=phantom)
    row: dict[str, object] = dict(truth_row(p, phantom))
    row["quirks"] = quirks.describe()
    return row


def _write_one_star(args: tuple) -> dict[str, object]:
    p, out_dir, seed, index, fields, quirks, instance = args
    return write_one(p, out_dir, seed=seed, index=index, fields=fields, quirks=quirks, instance=instance)


def write_cohort(
    out_dir,
    n: int,
    seed: int,
    *,
    fields: Iterable[int] = FIELDS_ORDER,
    quirks: Mapping[int, Quirks] | None = None,
    workers: int = 1,
    first_eid: int = 1000001,
    instance: int = 2,
    progress: Callable[[int], None] | None = None,
    domain: str = "ordinary",
) -> pd.DataFrame:
    """Write ``n`` participants' zips and ``out_dir/truth.csv``; return the truth table.

    Parameters
    ----------
    quirks:
        Participant index (0-based) -> :class:`Quirks`; others get none.
    workers:
        Processes to use (1 = in this process). The output does not depend on it.
    progress:
        Called with the number of participants just finished (1) after each one.
    domain:
        ``"ordinary"`` or ``"randomised"`` (domain-randomised phantoms, :mod:`ukbmri.synth.domain`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = tuple(sorted(set(int(f) for f in fields)))
    quirks = dict(quirks or {})
    bad = [i for i in quirks if not 0 <= i < n]
    if bad:
        raise ValueError(f"quirk participant indices {bad} outside 0..{n - 1}")
    people = sample_participants(n, np.random.default_rng(seed), first_eid=first_eid, domain=domain)
    jobs = [(p, out, seed, i, fields, quirks.get(i, Quirks()), instance) for i, p in enumerate(people)]
    rows: list[dict[str, object]] = []
    if workers <= 1 or n <= 1:
        for job in jobs:
            rows.append(_write_one_star(job))
            if progress is not None:
                progress(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_write_one_star, job) for job in jobs]
            for fut in as_completed(futures):
                rows.append(fut.result())
                if progress is not None:
                    progress(1)
    df = pd.DataFrame(rows, columns=[*TRUTH_COLUMNS, "quirks"]).sort_values("eid").reset_index(drop=True)
    with atomic_path(out / TRUTH_FILE) as tmp:
        df.to_csv(tmp, index=False)
    log.info("wrote %d %s participants (fields %s) to %s", n, domain, ",".join(map(str, fields)), out)
    return df
