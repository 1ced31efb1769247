"""The liver localiser: a small network proposes where the liver is, physics checks it.

:class:`LiverLocaliser` runs a :class:`~ukbmri.models.liver_unet.LiverUNet` on the
patient-oriented frame of one slice (:mod:`ukbmri.physics.liver_frame`: fat-water maps in,
so it does not depend on protocol, field strength or gain) and returns the probability
that each voxel is liver parenchyma, on the slice's own grid. The liver ROI
(:func:`ukbmri.physics.liver_roi.find_liver_roi`) takes the proposal as the liver region,
keeps only liver-like voxels of it and applies every physics check and QC flag as before.

Folder format (untrusted input: the weights load with ``torch.load(weights_only=True)``)::

    model.json   {"kind": "liver_localiser", "format": 1, "architecture": {...},
                  "demonstration_only": true, "frame": {"grid": 128, "pixel_mm": 3.0}, ...}
    weights.pt   the state dict

The bundled localiser (``ukbmri/data/liver/localiser``) was trained on the project's
randomised phantoms only: demonstration weights, see its ``model.json``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from ukbmri.errors import ModuleError
from ukbmri.physics.liver_frame import GRID, N_CHANNELS, PIXEL_MM, SliceFrame, slice_channels

__all__ = ["LiverLocaliser", "bundled_localiser", "load_localiser", "save_localiser", "BUNDLED_LOCALISER"]

BUNDLED_LOCALISER = Path(__file__).resolve().parents[1] / "data" / "liver" / "localiser"
KIND = "liver_localiser"


class LiverLocaliser:
    """A loaded localiser network (eval mode, CPU); call :meth:`probability` per slice."""

    def __init__(self, model, info: dict, folder: Path | None = None) -> None:
        self.model = model.eval()
        self.info = info
        self.folder = folder

    @property
    def fingerprint(self) -> str:
        return str(self.info.get("weights_sha256", ""))

    def probability(self, water: np.ndarray, fat: np.ndarray, ff_percent: np.ndarray, r2star: np.ndarray,
                    body: np.ndarray, spacing_mm: tuple[float, float], right: np.ndarray,
                    posterior: np.ndarray | None) -> np.ndarray:
        """Liver probability ``(x, y)`` of one slice from its whole-slice maps and orientation."""
        import torch

        frame = SliceFrame.build(body, spacing_mm, right, posterior)
        ch = slice_channels(water, fat, ff_percent, r2star, body)
        x = frame.to_frame(ch)[None]
        with torch.no_grad():
            logit = self.model(torch.from_numpy(x.astype(np.float32)))[0, 0].numpy()
        prob = 1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))
        return np.clip(frame.from_frame(prob), 0.0, 1.0)


def save_localiser(model, folder: str | Path, *, training: dict | None = None, metrics: dict | None = None) -> Path:
    """Write ``model.json`` + ``weights.pt`` (each atomically) and return the folder."""
    import io

    import torch

    from ukbmri.io.atomic import write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    data = buf.getvalue()
    write_bytes(folder / "weights.pt", data)
    info = {
        "kind": KIND, "format": 1, "architecture": {"name": "LiverUNet", **model.config},
        "frame": {"grid": GRID, "pixel_mm": PIXEL_MM, "channels": N_CHANNELS},
        "demonstration_only": True,
        "note": "trained on ukbmri's randomised liver phantoms only; not validated on UK Biobank scans",
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "training": training or {}, "metrics": metrics or {},
    }
    write_bytes(folder / "model.json", json.dumps(info, indent=1, default=float).encode())
    return folder


def load_localiser(folder: str | Path) -> LiverLocaliser:
    """Load a localiser folder; a wrong kind, frame or weights file is a :class:`ModuleError`."""
    from ukbmri.models.checkpoint import safe_torch_load
    from ukbmri.models.liver_unet import LiverUNet

    folder = Path(folder)
    try:
        info = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModuleError(f"cannot read the liver localiser's model.json: {exc}", path=folder) from exc
    if info.get("kind") != KIND or info.get("frame", {}).get("grid") != GRID \
            or info.get("frame", {}).get("pixel_mm") != PIXEL_MM:
        raise ModuleError("not a liver localiser folder of this version", path=folder,
                          expected=f"kind {KIND!r}, frame grid {GRID} at {PIXEL_MM} mm",
                          found=f"kind {info.get('kind')!r}, frame {info.get('frame')}")
    arch = {k: v for k, v in info.get("architecture", {}).items() if k != "name"}
    model = LiverUNet(**arch)
    try:
        data = (folder / "weights.pt").read_bytes()
    except OSError as exc:
        raise ModuleError(f"cannot read the liver localiser's weights: {exc}", path=folder / "weights.pt") from exc
    state = safe_torch_load(data, path=folder, member="weights.pt")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModuleError(f"the liver localiser's weights do not fit its architecture: {exc}",
                          path=folder / "weights.pt") from exc
    info["weights_sha256"] = hashlib.sha256(data).hexdigest()
    return LiverLocaliser(model, info, folder)


@functools.lru_cache(maxsize=1)
def bundled_localiser() -> LiverLocaliser:
    """The localiser shipped with ukbmri (loaded once per process; read-only afterwards)."""
    return load_localiser(BUNDLED_LOCALISER)
