"""The body stage: one 20201 zip (or a cached MIMIR image) -> body-composition predictions.

Per visit: fuse the Dixon stations into the MIMIR 2D image (cached in
``<workdir>/cache/<stem>.npy``, MIMIR's own layout), check the input's
plausibility before any network sees it, run every inference module, check the
predictions against the range each module was trained on, and return one typed
:class:`BodyRow`. A participant whose input fails the checks gets no network
numbers: a ledger row with the reason.

Demonstration modules (phantom-trained, ``demonstration_only`` in their
``module.json``) run only on zips that ``ukbmri synth`` marked as synthetic,
unless ``allow_demo`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ukbmri.engine.cohort import Visit, sha256_file
from ukbmri.engine.ledger import failure_from_exception
from ukbmri.engine.stage import Column, Job, JobResult

__all__ = ["BodyStage", "BodyRow", "Prediction", "ModuleRef", "unit_slug"]

log = logging.getLogger(__name__)

VERSION = "body-2"


@dataclass(frozen=True)
class ModuleRef:
    """A module folder, its file fingerprint and its targets (read without loading weights)."""

    folder: Path
    fingerprint: str
    demonstration: bool
    targets: tuple[tuple[str, str], ...]  #: (name, unit)

    @property
    def name(self) -> str:
        return self.folder.name

    @classmethod
    def of(cls, folder: str | Path) -> ModuleRef:
        from ukbmri.infer.weights import fingerprint, is_demonstration, module_targets

        folder = Path(folder)
        targets = tuple((t.name, t.unit) for t in module_targets(folder))
        return cls(folder, fingerprint(folder), is_demonstration(folder), targets)


@dataclass(frozen=True)
class Prediction:
    column: str  #: base column name, e.g. ``weight_kg``
    mean: float
    variance: float
    low: float
    high: float


@dataclass(frozen=True)
class BodyRow:
    """The body stage's result for one visit."""

    image: str  #: cache stem (MIMIR's name for the image)
    input_sha256: str | None
    predictions: tuple[Prediction, ...] = ()
    modules: tuple[ModuleRef, ...] = ()

    def cells(self) -> dict[str, Any]:
        out: dict[str, Any] = {"body_image": self.image, "body_input_sha256": self.input_sha256}
        for p in self.predictions:
            out[p.column] = p.mean
            out[f"{p.column}_variance"] = p.variance
            out[f"{p.column}_ci95_low"] = p.low
            out[f"{p.column}_ci95_high"] = p.high
        for m in self.modules:
            out[f"{m.name}__module_fingerprint"] = m.fingerprint
        return out


_UNIT_SLUGS = {"kg": "kg", "cm": "cm", "l": "l", "%": "percent", "years": "years", "bpm": "bpm", "1/s": "per_s",
               "g": "g", "(male = 1)": "male", "l/l": "l_per_l", "kg/l": "kg_per_l", "l/m2": "l_per_m2", "ms": "ms"}


def unit_slug(unit: str) -> str:
    """A unit as a column-name suffix: ``L`` -> ``l``, ``%`` -> ``percent``, ``(male = 1)`` -> ``male``."""
    u = unit.strip().lower()
    if u in _UNIT_SLUGS:
        return _UNIT_SLUGS[u]
    return "".join(c if c.isalnum() else "_" for c in u).strip("_")


def _base_column(name: str, unit: str) -> str:
    slug = unit_slug(unit)
    return name if not slug or name.lower().endswith(f"_{slug}") else f"{name}_{slug}"


def prediction_columns(modules: Sequence[ModuleRef]) -> dict[tuple[str, str], str]:
    """(module name, target name) -> base column; a target two modules predict is named by module."""
    bases: dict[str, int] = {}
    for m in modules:
        for name, unit in m.targets:
            b = _base_column(name, unit)
            bases[b] = bases.get(b, 0) + 1
    out = {}
    for m in modules:
        for name, unit in m.targets:
            b = _base_column(name, unit)
            out[(m.name, name)] = f"{m.name}__{b}" if bases[b] > 1 else b
    return out


@dataclass(frozen=True)
class BodyStage:
    """Body-composition predictions for visits with a 20201 zip or a cached image."""

    modules: tuple[ModuleRef, ...] = ()
    allow_demo: bool = False
    device: str = "cpu"
    precision: str = "fp32"
    cache_dir: Path | None = None  #: default ``<workdir>/cache``
    nifti_dir: Path | None = None
    png_dir: Path | None = None
    name: str = "body"
    version: str = VERSION
    batch_size: int = 1  #: visits per worker task: 1 balances the workers best (inference is per image anyway)
    prefetch: int | None = None  #: visits prepared ahead of inference; None: 1 on a GPU, else 0

    @property
    def fields(self) -> tuple[int, ...]:
        return (20201,)

    def settings(self) -> Mapping[str, Any]:
        from ukbmri.engine.cache import PIPELINE_VERSION

        return {"modules": [(m.name, m.fingerprint) for m in self.modules], "allow_demo": self.allow_demo,
                "precision": self.precision, "pipeline": PIPELINE_VERSION,
                "exports": [str(self.nifti_dir) if self.nifti_dir else None, str(self.png_dir) if self.png_dir else None]}

    def columns(self) -> list[Column]:
        cols = [Column("body_image", "string"), Column("body_input_sha256", "string")]
        for col in prediction_columns(self.modules).values():
            cols += [Column(col), Column(f"{col}_variance"), Column(f"{col}_ci95_low"), Column(f"{col}_ci95_high")]
        cols += [Column(f"{m.name}__module_fingerprint", "string") for m in self.modules]
        return cols

    def plan_inputs(self, visit: Visit) -> dict[int, Path] | None:
        f = visit.inputs.get(20201)
        return None if f is None else {20201: f.path}

    # ------------------------------------------------------------------ worker side
    def run(self, jobs: Sequence[Job], workdir: Path) -> list[JobResult]:
        columns = prediction_columns(self.modules)
        results = []
        # read + preprocess the next visits in a background thread while this one is inferred
        # (one image per forward pass either way, so the numbers are the same with or without)
        for p in _prefetched(lambda job: self._prepare(job, workdir), jobs, self._prefetch_depth()):
            if isinstance(p, JobResult):
                results.append(p)
                continue
            preds: list[Prediction] = []
            flags, failures = list(p.flags), []
            if p.predict:
                for ref in self.modules:
                    try:
                        (ps, fl), = self._predict(ref, p.image[None], columns)
                    except Exception as exc:  # noqa: BLE001 - one module failing (memory, bad file) spares the others
                        failures.append(failure_from_exception(str(ref.folder), "body-module", exc))
                        flags.append("body_module_failed")
                        continue
                    preds.extend(ps)
                    flags.extend(fl)
            row = BodyRow(p.stem, p.sha256, tuple(preds), self.modules if p.predict else ())
            results.append(JobResult(row.cells(), tuple(dict.fromkeys(flags)), tuple(failures), p.warnings))
        return results

    def _prefetch_depth(self) -> int:
        """Visits prepared ahead of inference: 1 on a GPU (the CPU reads while the GPU infers), else 0
        (on the CPU the worker's cores are busy inferring; another thread would only compete)."""
        if self.prefetch is not None:
            return max(int(self.prefetch), 0)
        if not self.modules or self.device == "cpu":
            return 0
        from ukbmri.models import resolve_device

        return 1 if str(resolve_device(self.device)).startswith("cuda") else 0

    def _prepare(self, job: Job, workdir: Path):
        from ukbmri.engine.cache import ImageCache

        path = job.inputs[20201]
        cache = ImageCache(self.cache_dir or workdir / "cache")
        try:
            if path.suffix.lower() == ".npy":
                return self._prepare_image(path)
            sha = sha256_file(path)
            hit = cache.lookup(path) if self.nifti_dir is None and self.png_dir is None else None
            if hit is not None:
                image = cache.load(hit.stem)
                flags, fatal, warnings = cache.qc(hit.stem)
            else:
                image, flags, fatal, warnings = self._preprocess(path, cache)
        except Exception as exc:  # noqa: BLE001 - a bad participant is a ledger row
            return JobResult(None, ("body_failed",), (failure_from_exception(path, "body", exc),))
        if fatal:
            from ukbmri.errors import QualityCheckError

            exc = QualityCheckError(fatal, path=path)
            return JobResult(None, ("body_failed", *flags), (failure_from_exception(path, "body-qc", exc),),
                             tuple(warnings))
        predict = bool(self.modules)
        if predict and not self.allow_demo and any(m.demonstration for m in self.modules):
            from ukbmri.io.synthetic import is_synthetic_zip

            if not is_synthetic_zip(path):
                predict = False
                flags = (*flags, "demo_weights_not_applied")
        return _Prepared(path.name.split(".", 1)[0], sha, image, tuple(flags), tuple(warnings), predict)

    def _prepare_image(self, path: Path):
        from ukbmri.engine.cache import ImageCache

        cache = ImageCache(path.parent)
        stem = path.name.split(".", 1)[0]
        image = cache.load(stem)
        flags, fatal = _image_checks(image)
        if fatal:
            from ukbmri.errors import QualityCheckError

            exc = QualityCheckError(fatal, path=path)
            return JobResult(None, ("body_failed", *flags), (failure_from_exception(path, "body-qc", exc),))
        predict = bool(self.modules) and (self.allow_demo or not any(m.demonstration for m in self.modules))
        if self.modules and not predict:
            flags = (*flags, "demo_weights_not_applied")
        return _Prepared(stem, None, image, tuple(flags), (), predict)

    def _preprocess(self, path: Path, cache):
        from ukbmri.preprocess.body import preprocess_body

        result = preprocess_body(path)
        flags, fatal = _volume_checks(result)
        cache.store(path, result.image, qc_flags=";".join(flags), qc_fatal=fatal, warnings=tuple(result.warnings))
        if self.nifti_dir is not None:
            from ukbmri.io.nifti import save_volume

            stem = path.name.split(".", 1)[0]
            save_volume(result.water, self.nifti_dir / f"{stem}_water.nii.gz")
            save_volume(result.fat, self.nifti_dir / f"{stem}_fat.nii.gz")
            save_volume(result.fat_fraction(), self.nifti_dir / f"{stem}_ff_percent.nii.gz")
        if self.png_dir is not None:
            from ukbmri.preprocess.preview import save_preview_png

            save_preview_png(result.image, self.png_dir / f"{path.name.split('.', 1)[0]}.png")
        return result.image, tuple(flags), fatal, tuple(result.warnings)

    def _predict(self, ref: ModuleRef, images: np.ndarray, columns) -> list[tuple[list[Prediction], list[str]]]:
        from ukbmri.infer.body import predict_images
        from ukbmri.infer.postprocess import physical_predictions
        from ukbmri.infer.weights import body_module

        module = body_module(str(ref.folder), ref.fingerprint, self.device)
        # one image per forward pass: a participant's numbers never depend on who shares its batch
        raw, var = predict_images(module, images, batch_size=1, device=self.device, precision=self.precision)
        mean, lo, hi, findings = physical_predictions(module, raw, var, 0.95)
        out_flags = [[f.flag for f in fs] for fs in findings]
        out = []
        for n in range(len(images)):
            ps = [Prediction(columns[(ref.name, t.name)], float(mean[n, k]), float(var[n, k]), float(lo[n, k]),
                             float(hi[n, k])) for k, t in enumerate(module.targets)]
            out.append((ps, out_flags[n]))
        return out


@dataclass(frozen=True)
class _Prepared:
    stem: str
    sha256: str | None
    image: np.ndarray = field(repr=False)
    flags: tuple[str, ...]
    warnings: tuple[str, ...]
    predict: bool


def _volume_checks(result) -> tuple[list[str], str]:
    """(flags, fatal reason or "") of a preprocessed 20201 zip."""
    from ukbmri.preprocess.qc import check_body_volumes

    findings = check_body_volumes(result.water, result.fat, stations=result.stations, warnings=result.warnings,
                                  swap_suspected=result.swap_suspected)
    return _split(findings)


def _image_checks(image: np.ndarray) -> tuple[tuple[str, ...], str]:
    from ukbmri.preprocess.qc import check_body_image

    flags, fatal = _split(check_body_image(image))
    return tuple(flags), fatal


def _split(findings) -> tuple[list[str], str]:
    flags = list(dict.fromkeys(f.flag for f in findings))
    fatal = "; ".join(f"{f.flag}: {f.detail}" for f in findings if f.fatal)
    return flags, fatal


def _prefetched(fn, items: Sequence, depth: int):
    """``fn(item)`` for each item in order; with ``depth > 0`` up to ``depth`` items ahead are
    computed in one background thread while the caller works on the current one."""
    if depth <= 0 or len(items) < 2:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ukbmri-prefetch") as ex:
        it = iter(items)
        ahead = deque(ex.submit(fn, item) for _, item in zip(range(depth + 1), it))
        while ahead:
            fut = ahead.popleft()
            nxt = next(it, _END)
            if nxt is not _END:
                ahead.append(ex.submit(fn, nxt))
            yield fut.result()


_END = object()
