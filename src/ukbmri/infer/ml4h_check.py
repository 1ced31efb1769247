"""Which input normalisation makes an imported ml4h student track its teacher.

The published student (``liver_fat_from_ideal.h5``) was most likely trained on
raw IDEAL intensities, the teacher on ZeroMeanStd1-normalised echoes
(docs/ml4h.md). On participant visits with both protocols the teacher's
predictions are the student's training truth, so the variant whose student
predictions agree with the teacher's is the one the student was trained with:

* :func:`check_student_normalisation` compares the variants on tensors;
* :func:`check_normalisation_from_zips` finds visits with both a 20203 and a
  20254 zip under folders, builds the tensors and calls it.

Agreement is the mean absolute difference in percentage points (MAE); the
variant with the lowest MAE wins, and the result is *decisive* when there are
at least ``min_pairs`` visits and every other variant's MAE is at least
``margin`` times the winner's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ukbmri.errors import ModuleError, UkbmriError
from ukbmri.infer.liver_nets import INPUT_NORMALISATIONS, LiverNet, predict_liver

__all__ = [
    "VariantResult",
    "NormalisationCheck",
    "check_student_normalisation",
    "check_normalisation_from_zips",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantResult:
    """The student with one input normalisation, against the teacher."""

    normalisation: str
    student_percent: np.ndarray  #: (n,)
    mae_pp: float  #: mean |student - teacher|, percentage points
    bias_pp: float  #: mean (student - teacher)
    pearson_r: float  #: NaN when undefined (n < 2 or constant predictions)


@dataclass(frozen=True)
class NormalisationCheck:
    """Result of :func:`check_student_normalisation`."""

    teacher_percent: np.ndarray  #: (n,)
    variants: tuple[VariantResult, ...]
    best: str  #: the variant with the lowest MAE
    decisive: bool
    min_pairs: int
    margin: float

    @property
    def n(self) -> int:
        return int(self.teacher_percent.size)

    def summary(self) -> str:
        """One line per variant and a verdict."""
        lines = [f"{'normalisation':<16}{'n':>6}{'MAE pp':>10}{'bias pp':>10}{'r':>8}"]
        for v in self.variants:
            lines.append(f"{v.normalisation:<16}{self.n:>6}{v.mae_pp:>10.3f}{v.bias_pp:>10.3f}{v.pearson_r:>8.3f}")
        verdict = "decisive" if self.decisive else (
            f"not decisive: needs >= {self.min_pairs} visits and the other variants' MAE >= "
            f"{self.margin:g} x the best")  # fmt: skip
        lines.append(f"student tracks the teacher best with input normalisation {self.best!r} ({verdict})")
        return "\n".join(lines)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def check_student_normalisation(
    teacher: LiverNet,
    student: LiverNet,
    gre_tensors: np.ndarray,
    ideal_tensors: np.ndarray,
    *,
    variants: Sequence[str] = INPUT_NORMALISATIONS,
    min_pairs: int = 3,
    margin: float = 2.0,
    batch_size: int = 8,
    device: str | None = None,
) -> NormalisationCheck:
    """Compare the student's input normalisation variants against the teacher on paired visits.

    Parameters
    ----------
    teacher, student:
        Loaded networks (:func:`ukbmri.infer.liver_nets.load_liver_net`); the
        teacher runs with its own input normalisation.
    gre_tensors, ideal_tensors:
        Raw tensors of the same visits, ``(n, 10, H, W)`` and ``(n, 36, H, W)``
        (:func:`~ukbmri.preprocess.liver_tensors.gre_tensor` / ``ideal_tensor``).
    variants:
        Normalisations to try (default: all of :data:`INPUT_NORMALISATIONS`).

    Raises
    ------
    ValueError
        Wrong kinds, unequal numbers of tensors, no visit, an unknown variant.
    TensorError
        A tensor cannot be normalised or has the wrong shape.
    """
    if teacher.kind != "teacher" or student.kind != "student":
        raise ValueError(f"need a teacher and a student, got {teacher.kind} and {student.kind}")
    g, i = np.asarray(gre_tensors), np.asarray(ideal_tensors)
    if g.shape[0] != i.shape[0] or g.shape[0] == 0:
        raise ValueError(f"need the same number (> 0) of GRE and IDEAL tensors, got {g.shape[0]} and {i.shape[0]}")
    bad = [v for v in variants if v not in INPUT_NORMALISATIONS]
    if bad or not variants:
        raise ValueError(f"variants must be among {INPUT_NORMALISATIONS}, got {list(variants)}")
    t, _ = predict_liver(teacher, g, batch_size=batch_size, device=device)
    results = []
    for v in variants:
        s, _ = predict_liver(dataclasses.replace(student, input_normalisation=v), i,
                             batch_size=batch_size, device=device)  # fmt: skip
        d = s - t
        results.append(VariantResult(v, s, float(np.mean(np.abs(d))), float(np.mean(d)), _pearson(s, t)))
    results.sort(key=lambda r: (not np.isfinite(r.mae_pp), r.mae_pp))
    best = results[0]
    others_far = all(r.mae_pp >= margin * best.mae_pp for r in results[1:])
    decisive = bool(t.size >= min_pairs and np.isfinite(best.mae_pp) and others_far)
    return NormalisationCheck(t, tuple(results), best.normalisation, decisive, min_pairs, float(margin))


def check_normalisation_from_zips(
    teacher: LiverNet,
    student: LiverNet,
    inputs: Iterable[str | os.PathLike[str]],
    *,
    max_visits: int | None = 200,
    **kwargs,
) -> tuple[NormalisationCheck, list[tuple[int, int]], list[tuple[int, int, str]]]:
    """:func:`check_student_normalisation` on every visit under ``inputs`` with both a 20203 and a 20254 zip.

    ``max_visits`` caps the visits used (the first ones by eid; ~10 MB of
    tensors each); ``None`` uses all. Other keyword arguments go to
    :func:`check_student_normalisation`.

    Returns the check, the ``(eid, instance)`` of its rows, and the visits
    that could not be used as ``(eid, instance, "<Error>: message")``.

    Raises :class:`ModuleError` when no visit is usable.
    """
    from ukbmri.infer.liver_nets import prepare_liver_input
    from ukbmri.io import read_zip
    from ukbmri.preprocess.liver_tensors import gre_tensor, ideal_tensor
    from ukbmri.preprocess.ml4h_tensorize import find_liver_visits
    from ukbmri.types import ParticipantKey

    visits, _ = find_liver_visits(inputs)
    gre, ideal, keys, failed = [], [], [], []
    strict_student = dataclasses.replace(student, input_normalisation="zero_mean_std1")
    for v in visits:
        if max_visits is not None and len(keys) >= max_visits:
            break
        by_field: dict[int, list] = {}
        for z in v.zips:
            key = ParticipantKey.from_path(z)
            if key is not None:
                by_field.setdefault(key.field, []).append(z)
        if 20203 not in by_field or 20254 not in by_field:
            continue
        try:
            g = gre_tensor(read_zip(by_field[20203][0], expect_field=20203))
            i = ideal_tensor(read_zip(by_field[20254][0], expect_field=20254))
            prepare_liver_input(teacher, g, path=by_field[20203][0])  # refuse what no variant can use
            prepare_liver_input(strict_student, i, path=by_field[20254][0])
        except UkbmriError as exc:
            failed.append((v.eid, v.instance, f"{type(exc).__name__}: {exc}"))
            log.warning("visit %d/%d not used: %s", v.eid, v.instance, exc)
            continue
        gre.append(g)
        ideal.append(i)
        keys.append((v.eid, v.instance))
    if not keys:
        raise ModuleError("no participant visit with both a usable 20203 and 20254 zip", path=None,
                          expected="<eid>_20203_<k>_0.zip and <eid>_20254_<k>_0.zip of the same visits",
                          found=f"{len(visits)} liver visit(s), {len(failed)} failed")  # fmt: skip
    return check_student_normalisation(teacher, student, np.stack(gre), np.stack(ideal), **kwargs), keys, failed
