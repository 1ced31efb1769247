"""Synthetic UK-Biobank-format cohorts: analytic phantoms, MR physics, real DICOM zips.

Everything downstream (fusion, MIMIR images, body-composition and liver-fat
networks, fat-water fitting) is developed on this output::

    from ukbmri.synth import sample_participants, write_participant, write_cohort
    truth = write_cohort("cohort/", n=20, seed=0)          # zips + cohort/truth.csv

Modules: :mod:`~ukbmri.synth.participant` (who), :mod:`~ukbmri.synth.body` and
:mod:`~ukbmri.synth.anatomy` (the phantom), :mod:`~ukbmri.synth.tissues`
(MR and physical tissue properties), :mod:`~ukbmri.synth.signal` (physics),
:mod:`~ukbmri.synth.layout` (geometry and timing), :mod:`~ukbmri.synth.ukb_writer`
(DICOM zips), :mod:`~ukbmri.synth.quirks`, :mod:`~ukbmri.synth.truth`,
:mod:`~ukbmri.synth.cohort`.
"""

from ukbmri.synth.anatomy import Phantom, build_phantom
from ukbmri.synth.cohort import write_cohort
from ukbmri.synth.participant import Participant, sample_participants
from ukbmri.synth.quirks import Quirks
from ukbmri.synth.tissues import Label
from ukbmri.synth.truth import TRUTH_COLUMNS, truth_row
from ukbmri.synth.ukb_writer import write_participant

__all__ = [
    "Participant",
    "Quirks",
    "Phantom",
    "Label",
    "TRUTH_COLUMNS",
    "sample_participants",
    "build_phantom",
    "write_participant",
    "write_cohort",
    "truth_row",
]
