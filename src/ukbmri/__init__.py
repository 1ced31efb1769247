"""ukbmri: UK Biobank abdominal MRI to phenotypes with calibrated uncertainty.

The public API is re-exported here as the pipelines land; see ``__all__``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ukbmri.errors import UkbmriError
from ukbmri.types import ParticipantKey, Series, Volume

__all__ = ["__version__", "UkbmriError", "ParticipantKey", "Series", "Volume"]
