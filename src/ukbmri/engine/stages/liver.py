"""The liver stage: 20203 and/or 20254 of one visit -> liver fat and R2*, physics and networks.

Per visit:

* **physics** on every liver protocol present: the multi-peak fat + R2* fit in an
  automatic liver ROI, with 95 % intervals and the ROI's own QC flags
  (``liver_roi_unreliable``). The headline ``liver_fat_physics_percent`` comes
  from the GRE (20203) when its ROI is reliable, else from the IDEAL (20254);
  both protocols' values are kept, and their disagreement is a flag.
* **networks** (ml4h teacher on 20203, student on 20254) when weights are given
  (demonstration weights only on synthetic inputs unless ``allow_demo``): mean,
  variance and interval; ``liver_physics_vs_<net>_disagree`` fires only when a
  reliable physics value lies outside the network's own 95 % interval.

A part that fails (one protocol unreadable, no liver found) is a ledger row
and a ``liver_<part>_failed`` flag; the row keeps what the other parts produced
(empty cells, never zeros). A visit where nothing worked has no row.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ukbmri.engine.cohort import Visit, sha256_file
from ukbmri.engine.ledger import failure_from_exception
from ukbmri.engine.stage import Column, Job, JobResult

__all__ = ["LiverStage", "LiverRow", "NetRef", "LIVER_FIELDS"]

log = logging.getLogger(__name__)

VERSION = "liver-4"  # liver-4: slow-decaying voxels (vessels) leave the ROI
LIVER_FIELDS = (20203, 20254)
PROTOCOL = {20203: "gre", 20254: "ideal"}
NETWORK_FIELD = {"teacher": 20203, "student": 20254}


@dataclass(frozen=True)
class NetRef:
    """A liver network's weights (folder or ml4h .h5), fingerprint and kind."""

    kind: str  #: "teacher" | "student"
    path: Path
    fingerprint: str
    demonstration: bool

    @classmethod
    def of(cls, kind: str, path: str | Path) -> NetRef:
        from ukbmri.infer.weights import fingerprint, is_demonstration

        path = Path(path)
        return cls(kind, path, fingerprint(path), is_demonstration(path))


@dataclass(frozen=True)
class LiverRow:
    """The liver stage's result for one visit (``None``: not measured)."""

    liver_fat_physics_percent: float | None = None
    liver_fat_physics_ci95_low: float | None = None
    liver_fat_physics_ci95_high: float | None = None
    liver_r2star_physics_per_s: float | None = None
    liver_r2star_physics_ci95_low: float | None = None
    liver_r2star_physics_ci95_high: float | None = None
    physics_source_field: int | None = None
    liver_roi_voxels: int | None = None
    liver_roi_method: str | None = None
    liver_fat_gre_physics_percent: float | None = None
    liver_r2star_gre_physics_per_s: float | None = None
    liver_fat_ideal_physics_percent: float | None = None
    liver_r2star_ideal_physics_per_s: float | None = None
    liver_fat_teacher_percent: float | None = None
    liver_fat_teacher_variance: float | None = None
    liver_fat_teacher_ci95_low: float | None = None
    liver_fat_teacher_ci95_high: float | None = None
    liver_fat_student_percent: float | None = None
    liver_fat_student_variance: float | None = None
    liver_fat_student_ci95_low: float | None = None
    liver_fat_student_ci95_high: float | None = None
    gre_zip: str | None = None
    ideal_zip: str | None = None
    gre_input_sha256: str | None = None
    ideal_input_sha256: str | None = None
    teacher_weights_fingerprint: str | None = None
    student_weights_fingerprint: str | None = None

    def cells(self) -> dict[str, Any]:
        return asdict(self)


_DTYPES = {"physics_source_field": "Int64", "liver_roi_voxels": "Int64"}
_STRINGS = ("liver_roi_method", "gre_zip", "ideal_zip", "gre_input_sha256", "ideal_input_sha256",
            "teacher_weights_fingerprint", "student_weights_fingerprint")


@dataclass(frozen=True)
class LiverStage:
    """Liver fat for visits with a 20203 and/or a 20254 zip."""

    teacher: NetRef | None = None
    student: NetRef | None = None
    allow_demo: bool = False
    device: str = "cpu"
    save_roi: bool = True
    localiser: bool = True  #: the bundled liver localiser proposes the physics ROI (else the image rules)
    name: str = "liver"
    version: str = VERSION
    batch_size: int = 1

    @property
    def fields(self) -> tuple[int, ...]:
        return LIVER_FIELDS

    def settings(self) -> Mapping[str, Any]:
        from ukbmri.infer.weights import fingerprint
        from ukbmri.physics.liver_locate import BUNDLED_LOCALISER

        return {"teacher": self.teacher.fingerprint if self.teacher else None,
                "student": self.student.fingerprint if self.student else None,
                "allow_demo": self.allow_demo,
                "localiser": fingerprint(BUNDLED_LOCALISER) if self.localiser else None}

    def columns(self) -> list[Column]:
        out = []
        for name in LiverRow.__dataclass_fields__:
            out.append(Column(name, "string" if name in _STRINGS else _DTYPES.get(name, "float64")))
        return out

    def plan_inputs(self, visit: Visit) -> dict[int, Path] | None:
        inputs = {f: visit.inputs[f].path for f in LIVER_FIELDS if f in visit.inputs}
        return inputs or None

    # ------------------------------------------------------------------ worker side
    def run(self, jobs: Sequence[Job], workdir: Path) -> list[JobResult]:
        return [self._one(job, workdir) for job in jobs]

    def _one(self, job: Job, workdir: Path) -> JobResult:
        from ukbmri.io import read_zip

        cells: dict[str, Any] = {}
        flags: list[str] = []
        failures = []
        zips, echoes = {}, {}
        for fld, path in sorted(job.inputs.items()):
            proto = PROTOCOL[fld]
            cells[f"{proto}_zip"] = path.name
            try:
                cells[f"{proto}_input_sha256"] = sha256_file(path)
                z = read_zip(path, expect_field=fld)
                echoes[fld] = _checked_echoes(z, path)
                zips[fld] = z
            except Exception as exc:  # noqa: BLE001 - recorded; the other protocol goes on
                failures.append(failure_from_exception(path, f"liver-read-{fld}", exc))
                flags.append(f"liver_{proto}_failed")

        physics = {}
        for fld, z in zips.items():
            proto = PROTOCOL[fld]
            try:
                physics[fld] = self._physics(echoes[fld], fld, job, workdir)
            except Exception as exc:  # noqa: BLE001
                failures.append(failure_from_exception(z.path, f"liver-physics-{fld}", exc))
                flags.append(f"liver_{proto}_physics_failed")
        for fld, res in physics.items():
            proto = PROTOCOL[fld]
            cells[f"liver_fat_{proto}_physics_percent"] = _num(res.pdff_percent)
            cells[f"liver_r2star_{proto}_physics_per_s"] = _num(res.r2star_per_s)
        headline = _headline(physics)
        if headline is not None:
            fld, res = headline
            lo, hi = _ci(res, "pdff_ci95")
            rlo, rhi = _ci(res, "r2star_ci95")
            cells.update(liver_fat_physics_percent=_num(res.pdff_percent), liver_fat_physics_ci95_low=lo,
                         liver_fat_physics_ci95_high=hi, liver_r2star_physics_per_s=_num(res.r2star_per_s),
                         liver_r2star_physics_ci95_low=rlo, liver_r2star_physics_ci95_high=rhi,
                         physics_source_field=fld, liver_roi_voxels=int(res.n_voxels),
                         liver_roi_method="localiser" if (res.qc.get("roi_localiser") or {}).get("used") else "rules")
            flags.extend(res.flags)
        if 20203 in physics and 20254 in physics:
            flags.extend(_cross_check(physics[20203], physics[20254]))

        for net in (self.teacher, self.student):
            if net is None or NETWORK_FIELD[net.kind] not in zips:
                continue
            z = zips[NETWORK_FIELD[net.kind]]
            if net.demonstration and not self.allow_demo:
                from ukbmri.io.synthetic import is_synthetic_zip

                if not is_synthetic_zip(z.path):
                    flags.append("demo_weights_not_applied")
                    continue
            try:
                values, net_flags = self._network(net, z)
            except Exception as exc:  # noqa: BLE001
                failures.append(failure_from_exception(z.path, f"liver-{net.kind}", exc))
                flags.append(f"liver_{net.kind}_failed")
                continue
            cells.update(values)
            cells[f"{net.kind}_weights_fingerprint"] = net.fingerprint
            flags.extend(net_flags)
            trusted = headline is not None and "liver_roi_unreliable" not in headline[1].flags
            lo, hi = values.get(f"liver_fat_{net.kind}_ci95_low"), values.get(f"liver_fat_{net.kind}_ci95_high")
            phys = cells.get("liver_fat_physics_percent")
            if trusted and lo is not None and hi is not None and phys is not None and not lo <= phys <= hi:
                flags.append(f"liver_physics_vs_{net.kind}_disagree")

        produced = any(k.startswith("liver_fat") and v is not None for k, v in cells.items())
        flags = tuple(dict.fromkeys(flags))
        if not produced:
            return JobResult(None, (*flags, "liver_failed"), tuple(failures))
        row = LiverRow(**{k: v for k, v in cells.items() if k in LiverRow.__dataclass_fields__})
        return JobResult(row.cells(), flags, tuple(failures))

    def _physics(self, echoes, fld: int, job: Job, workdir: Path):
        from ukbmri.physics.liver import liver_fat_from_multiecho

        res = liver_fat_from_multiecho(echoes, device="cpu", protocol=PROTOCOL[fld],
                                       localiser="bundled" if self.localiser else None)
        if self.save_roi:
            res.save_mask(workdir / "liver_roi" / f"{job.eid}_{job.instance}_{fld}")
        return res

    def _network(self, ref: NetRef, z) -> tuple[dict[str, Any], list[str]]:
        import numpy as np

        from ukbmri.infer.liver_nets import predict_liver
        from ukbmri.infer.weights import liver_net
        from ukbmri.models.ml4h_liver import liver_fat_interval
        from ukbmri.preprocess.liver_tensors import gre_tensor, ideal_tensor

        net = liver_net(str(ref.path), ref.fingerprint, self.device)
        from ukbmri.infer.liver_nets import liver_input_flags

        flags = list(liver_input_flags(net, z))
        tensor = gre_tensor(z) if ref.kind == "teacher" else ideal_tensor(z)
        mean, var = predict_liver(net, tensor[None], device=self.device)
        k = ref.kind
        out: dict[str, Any] = {f"liver_fat_{k}_percent": float(mean[0])}
        if var is not None:
            lo, hi = liver_fat_interval(mean, var, 0.95)
            out.update({f"liver_fat_{k}_variance": float(var[0]),
                        f"liver_fat_{k}_ci95_low": float(np.asarray(lo).reshape(-1)[0]),
                        f"liver_fat_{k}_ci95_high": float(np.asarray(hi).reshape(-1)[0])})
        return out, flags


def _checked_echoes(z, path: Path):
    """The zip's multi-echo data for the physics fit, built once; blank, constant or noise-only
    echoes never reach a fit or a network (a QualityCheckError)."""
    import numpy as np

    from ukbmri.physics.inputs import multiecho_from_zip
    from ukbmri.preprocess.qc import check_multiecho, raise_if_fatal

    data = multiecho_from_zip(z)
    raise_if_fatal(check_multiecho(np.abs(np.asarray(data.images)), what=f"field {z.field}"), path=path)
    return data


def _headline(physics: dict):
    """(field, result) giving the headline physics value: a reliable ROI first, GRE before IDEAL."""
    if not physics:
        return None
    reliable = [f for f in (20203, 20254) if f in physics and "liver_roi_unreliable" not in physics[f].flags]
    fld = reliable[0] if reliable else min(physics)
    return fld, physics[fld]


def _cross_check(gre, ideal) -> tuple[str, ...]:
    from ukbmri.physics.liver import cross_check

    return tuple(cross_check(gre, ideal))


def _ci(res, name: str) -> tuple[float | None, float | None]:
    ci = getattr(res, name)
    return _num(ci[0]), _num(ci[1])


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
