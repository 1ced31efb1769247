"""Train the liver localiser (the small U-Net that marks the liver for the physics liver ROI).

    python benchmarks/train_liver_localiser.py --n 2000 --cache /tmp/liverseg --out src/ukbmri/data/liver/localiser

Slices come from the *train* variant of :func:`ukbmri.synth.liver_stress.stress_case` only
(:func:`ukbmri.train.liver_seg.make_samples`, about 0.3 s each for the whole-slice fit);
they are cached as one ``.npz`` per slice under ``--cache`` so a second run only trains.
Prints the validation Dice per epoch and, at the end, the Dice on ``--heldout`` fresh
slices of the *held-out* variant (never used for any choice) and on fresh train-variant
slices. The weights are demonstration weights (phantoms only).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np


def load_or_make(cache: Path, n: int, seed: int, variant: str):
    from ukbmri.train.liver_seg import SegSample, make_samples

    cache.mkdir(parents=True, exist_ok=True)
    out = []
    chunk = 50
    for c0 in range(0, n, chunk):
        f = cache / f"{variant}_{seed}_{c0:06d}.npz"
        if not f.exists():
            rng = np.random.default_rng([seed, c0])
            ss = make_samples(rng, min(chunk, n - c0), variant=variant)
            arrays = {}
            for k, s in enumerate(ss):
                arrays[f"ch{k}"], arrays[f"liver{k}"] = s.channels, s.liver
                arrays[f"geo{k}"] = np.array([*s.spacing_mm, *s.right, *s.posterior])
            tmp = f.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.rename(f)
        with np.load(f) as z:
            k = 0
            while f"ch{k}" in z:
                g = z[f"geo{k}"]
                out.append(SegSample(channels=z[f"ch{k}"], liver=z[f"liver{k}"], spacing_mm=tuple(g[:2]),
                                     right=tuple(g[2:4]), posterior=tuple(g[4:6])))
                k += 1
    return out


def frame_dice(model, samples) -> float:
    import torch

    from ukbmri.train.liver_seg import dice, frame_batch

    x, y = frame_batch(samples, None)
    with torch.no_grad():
        p = torch.cat([model(torch.from_numpy(x[i:i + 32])) for i in range(0, len(x), 32)]).numpy() > 0
    return float(np.mean([dice(a, b) for a, b in zip(p, y > 0.5)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/ukbmri_liverseg"))
    ap.add_argument("--out", type=Path, default=None, help="write the localiser folder here")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--width", type=int, default=12)
    ap.add_argument("--heldout", type=int, default=100, help="held-out-variant slices for the final Dice")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--randomise-contrast", action="store_true",
                    help="also randomise T1-like fat weighting, air-filled blobs and fit outliers (not shipped)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    samples = load_or_make(a.cache, a.n, a.seed, "train")
    print(f"{len(samples)} training slices ({time.perf_counter() - t0:.0f} s)")
    if a.generate_only:
        return
    from ukbmri.physics.liver_locate import save_localiser
    from ukbmri.train.liver_seg import TrainSettings, train_localiser

    st = TrainSettings(epochs=a.epochs, width=a.width, seed=a.seed, randomise_contrast=a.randomise_contrast)
    t0 = time.perf_counter()
    model, hist = train_localiser(samples, st)
    print(f"trained in {time.perf_counter() - t0:.0f} s; validation Dice per epoch "
          f"{' '.join(f'{d:.3f}' for d in hist['val_dice'])}")
    fresh = load_or_make(a.cache, a.heldout, a.seed + 1000, "train")
    held = load_or_make(a.cache, a.heldout, 4321, "heldout")
    metrics = {"dice_fresh_train_variant": frame_dice(model, fresh), "dice_heldout_variant": frame_dice(model, held),
               "n_train": len(samples), "history": hist}
    print(f"Dice: fresh train-variant {metrics['dice_fresh_train_variant']:.3f}, "
          f"held-out variant {metrics['dice_heldout_variant']:.3f} ({a.heldout} slices each)")
    if a.out is not None:
        save_localiser(model, a.out, training={"settings": st.__dict__, "generator": "stress_case variant train",
                                              "seed": a.seed}, metrics=metrics)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
