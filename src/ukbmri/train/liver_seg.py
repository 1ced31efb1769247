"""Training the liver localiser (:class:`~ukbmri.models.liver_unet.LiverUNet`) on randomised phantoms.

Data: :func:`~ukbmri.synth.liver_stress.stress_case` slices of the **train** variant only
(the held-out variant stays for evaluation), GRE and IDEAL, 1.5 and 3 T, liver PDFF 0-50 %,
R2* 20-500 /s, noise x0.5-3, and a share of slices without a liver. Each slice goes through
the same whole-slice fit as at inference (:func:`ukbmri.physics.liver.roi_maps_for`); the
target is the drawn liver parenchyma. The lesson of SynthSeg: heavy randomisation teaches
shape and position rather than one generator's intensities, so every epoch draws a new
frame perturbation (rotation, scale, shift) and a new proton-density gamma and gain per
slice. ``TrainSettings.randomise_contrast`` adds contrasts the phantoms lack (T1-like fat
weighting, air-filled dark blobs whose fat fraction and R2* are noise, scattered fit
outliers): tried, not shipped (``docs/liver_qc.md``).

:func:`make_samples` builds the slices (about 0.3 s each, the fit); :func:`train_localiser`
trains; :func:`~ukbmri.physics.liver_locate.save_localiser` writes the folder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SegSample", "make_samples", "frame_batch", "train_localiser", "TrainSettings", "dice"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SegSample:
    """One slice: native-grid input channels, target, geometry."""

    channels: np.ndarray = field(repr=False)  #: (C, x, y) float16, :func:`slice_channels`
    liver: np.ndarray = field(repr=False)  #: (x, y) bool
    spacing_mm: tuple[float, float]
    right: tuple[float, float]
    posterior: tuple[float, float]


def make_samples(rng: np.random.Generator, n: int, *, variant: str = "train", no_liver_share: float = 0.1,
                 share_3t: float = 0.2) -> list[SegSample]:
    """``n`` randomised slices (protocols alternate) with their fitted input channels."""
    from ukbmri.physics.liver import roi_maps_for
    from ukbmri.physics.liver_frame import slice_channels
    from ukbmri.physics.liver_roi import body_mask, patient_right_direction, posterior_direction
    from ukbmri.synth.liver_stress import stress_case

    out, t0 = [], time.perf_counter()
    for k in range(n):
        c = stress_case(rng, variant=variant, protocol="gre" if k % 2 == 0 else "ideal",
                        field_strength_t=3.0 if rng.uniform() < share_3t else 1.5,
                        with_liver=bool(rng.uniform() >= no_liver_share))
        m = roi_maps_for(c.data)
        ch = slice_channels(m.water[:, :, 0], m.fat[:, :, 0], m.ff_percent[:, :, 0], m.r2star_per_s[:, :, 0],
                            body_mask(m.mask[:, :, 0]))
        aff = c.data.affine_lps
        out.append(SegSample(channels=ch.astype(np.float16), liver=c.liver.copy(),
                             spacing_mm=tuple(float(v) for v in c.data.spacing[:2]),
                             right=tuple(patient_right_direction(aff)), posterior=tuple(posterior_direction(aff))))
        if (k + 1) % 100 == 0:
            log.info("liver localiser samples: %d / %d (%.0f s)", k + 1, n, time.perf_counter() - t0)
    return out


def frame_batch(samples: list[SegSample], rng: np.random.Generator | None, *,
                randomise_contrast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Frame-grid inputs ``(B, C, G, G)`` and targets ``(B, 1, G, G)``; ``rng``: augmentation (None: none).

    With ``rng``: a random frame (rotation, scale, shift) and proton-density gamma and gain;
    ``randomise_contrast`` adds :func:`_randomise_contrast`'s contrasts.
    """
    from ukbmri.physics.liver_frame import SliceFrame

    xs, ys = [], []
    for s in samples:
        body = s.channels[-1] > 0.5
        kw = {}
        if rng is not None:
            kw = dict(rotation_rad=float(rng.uniform(-0.35, 0.35)), scale=float(rng.uniform(0.85, 1.2)),
                      shift_mm=(float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20))))
        fr = SliceFrame.build(body, s.spacing_mm, np.array(s.right), np.array(s.posterior), **kw)
        ch = fr.to_frame(s.channels)
        y = fr.to_frame(s.liver.astype(np.float32))[None] > 0.5
        if rng is not None and randomise_contrast:
            _randomise_contrast(ch, y[0], rng)
        elif rng is not None:
            ch[0] = np.clip(ch[0], 0, None) ** float(rng.uniform(0.7, 1.4)) * float(rng.uniform(0.8, 1.25))
        xs.append(ch)
        ys.append(y)
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


def _randomise_contrast(ch: np.ndarray, liver: np.ndarray, rng: np.random.Generator) -> None:
    """Contrasts the phantoms do not have, in place on frame channels (see the module docstring).

    * T1 weighting: fat brighter than water by a random factor (proton density x (1 + k FF)),
      renormalised to the body's 90th percentile as at inference; then a random gamma and gain;
    * air-filled structures inside the body (lung bases, bowel gas): dark blobs whose fat
      fraction and R2* are fit noise;
    * scattered fit outliers: a random share of voxels with a random fat fraction.
    """
    body = ch[3] > 0.5
    if not body.any():
        return
    pd = np.clip(ch[0], 0, None) * (1.0 + float(rng.uniform(-0.3, 1.5)) * ch[1])
    pd /= max(float(np.percentile(pd[body], 90)), 1e-6)
    ch[0] = np.clip(pd ** float(rng.uniform(0.7, 1.4)) * float(rng.uniform(0.8, 1.25)), 0, 2) * body
    g = ch.shape[1]
    ii, jj = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    for _ in range(int(rng.integers(0, 4))):
        ci, cj = rng.uniform(0.2 * g, 0.8 * g, size=2)
        ri, rj = rng.uniform(4, 18, size=2)
        blob = body & ~liver & (((ii - ci) / ri) ** 2 + ((jj - cj) / rj) ** 2 <= 1.0)
        n = int(blob.sum())
        ch[0][blob] = rng.uniform(0.0, 0.2, n)
        ch[1][blob] = rng.uniform(0.0, 1.0, n)
        ch[2][blob] = rng.uniform(-1.5, 1.5, n)
    speck = body & (rng.uniform(size=body.shape) < rng.uniform(0.0, 0.08))
    ch[1][speck] = rng.uniform(0.0, 1.0, int(speck.sum()))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1 when both are empty)."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    s = p.sum() + t.sum()
    return 1.0 if s == 0 else float(2.0 * (p & t).sum() / s)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 12
    batch_size: int = 16
    lr: float = 2e-3
    width: int = 12
    seed: int = 0
    validation_fraction: float = 0.1
    randomise_contrast: bool = False


def train_localiser(samples: list[SegSample], settings: TrainSettings = TrainSettings()):
    """Train a :class:`LiverUNet`; returns ``(model in eval mode, history dict)``.

    Loss: binary cross-entropy + soft Dice; Adam with cosine decay; validation Dice (at 0.5)
    on a fixed share of the samples without augmentation after every epoch.
    """
    import torch

    from ukbmri.models.liver_unet import LiverUNet
    from ukbmri.physics.liver_frame import N_CHANNELS

    rng = np.random.default_rng(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # conv initialisation draws from the default generator
    order = rng.permutation(len(samples))
    n_val = max(1, int(round(settings.validation_fraction * len(samples))))
    val = [samples[i] for i in order[:n_val]]
    train = [samples[i] for i in order[n_val:]]
    model = LiverUNet(in_channels=N_CHANNELS, width=settings.width)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    steps = settings.epochs * int(np.ceil(len(train) / settings.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=steps, pct_start=0.1)
    xv, yv = frame_batch(val, None)
    history: dict = {"train_loss": [], "val_dice": []}
    for ep in range(settings.epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen).numpy()
        losses = []
        for b in range(0, len(train), settings.batch_size):
            x, y = frame_batch([train[i] for i in perm[b:b + settings.batch_size]], rng,
                               randomise_contrast=settings.randomise_contrast)
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            logit = model(x)
            p = torch.sigmoid(logit)
            inter = (p * y).sum(dim=(1, 2, 3))
            soft_dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + y.sum(dim=(1, 2, 3)) + 1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y) + soft_dice.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            pv = torch.cat([model(torch.from_numpy(xv[i:i + 32])) for i in range(0, len(xv), 32)]).numpy() > 0
        dv = float(np.mean([dice(a, b) for a, b in zip(pv, yv > 0.5)]))
        history["train_loss"].append(float(np.mean(losses)))
        history["val_dice"].append(dv)
        log.info("localiser epoch %d: loss %.4f, validation Dice %.3f", ep + 1, np.mean(losses), dv)
    model.eval()
    return model, history
