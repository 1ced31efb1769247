"""ukbmri: UK Biobank abdominal MRI to phenotypes with calibrated uncertainty.

For notebooks::

    import ukbmri
    result = ukbmri.run(["/mnt/project/Bulk"], "out", modules=["modules/weight"], workers=4)
    result.table      # pandas DataFrame, one row per (eid, instance)
    result.failures   # the ledger
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from ukbmri.errors import UkbmriError
from ukbmri.types import ParticipantKey, Series, Volume

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__", "UkbmriError", "ParticipantKey", "Series", "Volume", "run"]


def run(inputs, out, **kwargs):
    """Run the whole engine (see :func:`ukbmri.engine.run.run`); returns a ``RunResult``
    whose ``table`` and ``failures`` are pandas DataFrames."""
    from ukbmri.engine.run import run as _run

    return _run(inputs, out, **kwargs)
