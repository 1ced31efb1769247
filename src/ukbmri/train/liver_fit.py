"""Training one liver network: the ml4h recipe's loop, early stopping, and a collapse guard.

:func:`fit_liver` trains a teacher or student on normalised inputs and standardised targets
(masked log-cosh, or the Gaussian NLL of a mean-variance head, with the teacher's variance
added when distilling), Adam, early stopping on an inner validation split by participant,
learning-rate halving on plateaus, keeping the best epoch's weights. :func:`fit_alive`
re-initialises a network that collapsed to a constant output. :func:`load_warm_start` reads
the weights of an existing liver-net folder to start from instead of a random initialisation. Cross-validation and the
teacher's folder are in :mod:`ukbmri.train.liver`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ukbmri.errors import ModuleError, TargetsError
from ukbmri.infer.liver_nets import MODEL_JSON, build_liver_model, load_liver_net
from ukbmri.preprocess.tensormaps import LIVER_FAT_MEAN, LIVER_FAT_STD
from ukbmri.models import resolve_device
from ukbmri.train.liver_data import LiverData
from ukbmri.train.loop import batch_indices
from ukbmri.train.losses import gaussian_nll_masked, log_cosh_masked

__all__ = [
    "LiverTrainConfig",
    "FitHistory",
    "WarmStart",
    "load_warm_start",
    "init_keras_",
    "fit_liver",
    "fit_alive",
    "is_collapsed",
    "predict_normalised",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiverTrainConfig:
    """Training settings of one liver network (ml4h defaults)."""

    epochs: int = 108
    patience: int = 24
    batch_size: int = 8
    lr: float = 2e-4
    steps_per_epoch: int | None = None  #: None: one pass over the training rows
    validation_fraction: float = 0.1
    mean_variance: bool = True
    kernel_size: int = 3
    lr_patience: int | None = 8  #: halve the learning rate after this many epochs without a better val loss
    lr_factor: float = 0.5

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if self.lr_patience is not None and self.lr_patience < 1:
            raise ValueError("lr_patience must be >= 1 (or None: constant learning rate)")
        if not 0.0 < self.lr_factor <= 1.0:
            raise ValueError("lr_factor must be in (0, 1]")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in [0, 1)")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1")


@dataclass(eq=False)
class FitHistory:
    """Per-epoch losses of one network, the epoch whose weights were kept, and the steps taken."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    steps: int = 0
    n_train: int = 0
    n_val: int = 0
    restarts: int = 0  #: re-initialisations after a collapse to a constant output (see :func:`fit_alive`)


# --------------------------------------------------------------------------- networks
def init_keras_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Keras defaults in place: Glorot-uniform kernels, zero biases, drawn from ``generator``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                rf = w[0, 0].numel() if w.ndim > 2 else 1
                fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                w.copy_(torch.rand(w.shape, generator=generator) * 2 * limit - limit)
                if m.bias is not None:
                    m.bias.zero_()
    return model


def _loss(out: torch.Tensor, y: torch.Tensor, var_t: torch.Tensor | None, mean_variance: bool) -> torch.Tensor:
    """Masked loss in standardised units; NaN targets contribute nothing.

    Mean-variance: ``exp(-s)((y - mu)^2 + v) + s`` where ``v`` is the target's
    own variance (distillation from a mean-variance teacher; 0 otherwise), whose
    minimiser is ``exp(s) = (y - mu)^2 + v``.
    """
    if not mean_variance:
        return log_cosh_masked(out[:, 0], y)
    mu, s = out[:, 0], out[:, 1]
    loss = gaussian_nll_masked(mu, s, y)
    if var_t is not None:
        valid = torch.isfinite(y) & torch.isfinite(var_t)
        extra = torch.where(valid, torch.exp(-torch.where(valid, s, torch.zeros_like(s)))
                            * torch.where(valid, var_t, torch.zeros_like(var_t)), torch.zeros_like(s))
        loss = loss + extra.sum() / valid.sum().clamp(min=1)
    return loss


@torch.no_grad()
def predict_normalised(model: nn.Module, x: np.ndarray, *, batch_size: int = 8,
                       device: torch.device | str = "cpu") -> np.ndarray:
    """Raw network outputs ``(N, 1|2)`` (float64) for normalised float16/32 inputs."""
    dev = resolve_device(device)
    model.to(dev).eval()
    outs = [model(torch.from_numpy(np.asarray(x[i:i + batch_size], dtype=np.float32)).to(dev)).float().cpu()
            for i in range(0, len(x), batch_size)]
    return torch.cat(outs).numpy().astype(np.float64) if outs else np.empty((0, 1))


def _val_split(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of validation rows: ``fraction`` of the participants (at least 1 when > 0)."""
    uniq = np.unique(groups)
    if fraction <= 0 or uniq.size < 4:
        return np.zeros(groups.size, dtype=bool)
    n_val = max(1, int(round(fraction * uniq.size)))
    chosen = rng.choice(uniq, size=n_val, replace=False)
    return np.isin(groups, chosen)


def _steps_per_epoch(n_train: int, cfg: LiverTrainConfig) -> int:
    return cfg.steps_per_epoch or max(1, math.ceil(n_train / cfg.batch_size))


def fit_liver(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    cfg: LiverTrainConfig,
    seed: int,
    device: torch.device | str = "cpu",
    var_target: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    name: str = "network",
) -> FitHistory:
    """Train ``model`` in place on normalised inputs and standardised targets, with early stopping.

    Parameters
    ----------
    x:
        ``(N, C, H, W)`` normalised inputs (float16 is fine; batches go to float32).
    y:
        ``(N,)`` standardised targets, NaN where missing (masked).
    groups:
        Participant of each row (the inner validation split is by participant).
    var_target:
        Standardised variance of each target (distillation), or None.
    seed:
        Seeds the validation split, the batch order and nothing else.
    progress:
        Called with 1 after every optimiser step; when training stops early
        it is called once more with the steps that were not taken.
    on_epoch:
        Called with (epoch index, model) after every epoch (experiments, logging).

    Returns
    -------
    FitHistory
        The model is left in eval mode with the best validation epoch's weights.
    """
    dev = resolve_device(device)
    ss = np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss.spawn(1)[0])
    gen = torch.Generator().manual_seed(int(ss.generate_state(1)[0]))
    keep = np.isfinite(y)
    val = _val_split(np.asarray(groups)[keep], cfg.validation_fraction, rng)
    rows = np.flatnonzero(keep)
    tr_rows, va_rows = rows[~val], rows[val]
    if tr_rows.size == 0:
        raise TargetsError(f"{name}: no labelled row to train on")
    hist = FitHistory(n_train=int(tr_rows.size), n_val=int(va_rows.size))
    y_t = torch.as_tensor(y, dtype=torch.float32)
    v_t = None if var_target is None else torch.as_tensor(var_target, dtype=torch.float32)
    spe = _steps_per_epoch(tr_rows.size, cfg)
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = None
    if cfg.lr_patience is not None and va_rows.size:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                           patience=cfg.lr_patience, threshold=1e-4,
                                                           threshold_mode="abs")
    batches = batch_indices(tr_rows.size, cfg.batch_size, gen)
    best, best_state, since_best = math.inf, None, 0
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        total = 0.0
        for _ in range(spe):
            idx = tr_rows[next(batches).numpy()]
            xb = torch.from_numpy(np.asarray(x[idx], dtype=np.float32)).to(dev)
            it = torch.from_numpy(idx)
            yb = y_t[it].to(dev)
            vb = None if v_t is None else v_t[it].to(dev)
            loss = _loss(model(xb), yb, vb, cfg.mean_variance)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: training loss became {loss.item()} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            hist.steps += 1
            if progress is not None:
                progress(1)
        hist.train_loss.append(total / spe)
        if on_epoch is not None:
            on_epoch(epoch, model)
            model.train()
        if va_rows.size:
            out = torch.from_numpy(predict_normalised(model, x[va_rows], batch_size=max(cfg.batch_size, 16),
                                                      device=dev)).float()
            iv = torch.from_numpy(va_rows)
            vl = _loss(out, y_t[iv], None if v_t is None else v_t[iv], cfg.mean_variance).item()
            hist.val_loss.append(vl)
            if sched is not None:
                sched.step(vl)
            if vl < best:
                best, since_best, hist.best_epoch = vl, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            log.info("%s epoch %d: train %.4f, val %.4f%s (%.0f s)", name, epoch + 1, hist.train_loss[-1], vl,
                     " *" if since_best == 0 else "", time.perf_counter() - t0)
            if since_best >= cfg.patience:
                log.info("%s: early stop after epoch %d (best %d)", name, epoch + 1, hist.best_epoch + 1)
                break
        else:
            hist.best_epoch = epoch
            log.info("%s epoch %d: train %.4f (%.0f s)", name, epoch + 1, hist.train_loss[-1],
                     time.perf_counter() - t0)
    if progress is not None:
        skipped = spe * cfg.epochs - hist.steps
        if skipped > 0:
            progress(skipped)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return hist


#: init-seed offset of each restart
RESTART_SEED_STEP = 1_000_003


@torch.no_grad()
def is_collapsed(model: nn.Module, x: np.ndarray, *, rows: int = 64, device: torch.device | str = "cpu") -> bool:
    """True when the network no longer depends on its input (dead ReLUs).

    The 64-wide ``embed`` activations are compared over the first ``rows`` inputs: when
    the inputs differ but every activation is the same for all of them, a whole layer of
    ReLUs is dead and the network predicts one constant.
    """
    xb = np.asarray(x[:rows])
    if len(xb) < 2 or not np.any(xb.max(axis=0) != xb.min(axis=0)):
        return False  # identical inputs: nothing to tell
    dev = resolve_device(device)
    model.eval()
    emb = torch.cat([model.embed(torch.as_tensor(xb[i:i + 16], dtype=torch.float32, device=dev)).cpu()
                     for i in range(0, len(xb), 16)])
    return float(emb.std(dim=0).max()) < 1e-6


def fit_alive(
    kind: str,
    data: LiverData,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    cfg: LiverTrainConfig,
    init_seed: int,
    fit_seed: int,
    max_restarts: int = 2,
    device: torch.device | str = "cpu",
    init_state: Mapping[str, torch.Tensor] | None = None,
    **fit_kwargs: Any,
) -> tuple[nn.Module, FitHistory]:
    """A new network trained with :func:`fit_liver`, re-initialised if it collapses to a constant.

    ``init_state``: weights to start from (a warm start, :func:`load_warm_start`) instead of the
    random initialisation of ``init_seed``; the re-initialisations after a collapse are random.

    A collapsed network predicts the same value for every input (:func:`is_collapsed`; seen
    once in four student runs on phantoms: a layer's ReLUs all died in the first steps). It is
    re-initialised with ``init_seed + k * RESTART_SEED_STEP`` (k = 1, 2, ...) and trained
    again, at most ``max_restarts`` times; the history records the restarts.
    """
    for k in range(max_restarts + 1):
        model = _new_model(kind, data.input_shape, cfg, init_seed + k * RESTART_SEED_STEP)
        if k == 0 and init_state is not None:
            model.load_state_dict(init_state, strict=True)
        hist = fit_liver(model, data.x, y, groups, cfg=cfg, seed=fit_seed, device=device, **fit_kwargs)
        hist.restarts = k
        train_rows = np.flatnonzero(np.isfinite(y))
        if not is_collapsed(model, data.x[train_rows], device=device):
            return model, hist
        log.warning("%s: the network collapsed to a constant output; re-initialising (%d of %d)",
                    fit_kwargs.get("name", kind), k + 1, max_restarts)
    raise FloatingPointError(f"{fit_kwargs.get('name', kind)}: the network collapsed to a constant output "
                             f"{max_restarts + 1} times; lower the learning rate")




def _new_model(kind: str, input_shape, cfg: LiverTrainConfig, seed: int) -> nn.Module:
    model = build_liver_model(kind, mean_variance=cfg.mean_variance, input_shape=input_shape,
                              kernel_size=cfg.kernel_size)
    return init_keras_(model, torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- warm start
@dataclass(frozen=True, eq=False)
class WarmStart:
    """The weights of an existing liver-net folder, to start training from (see :func:`load_warm_start`)."""

    folder: Path
    weights_sha256: str
    state: Mapping[str, torch.Tensor]

    @property
    def info(self) -> dict[str, str]:
        """What model.json records (``training.init_from``)."""
        return {"folder": str(self.folder), "weights_sha256": self.weights_sha256}


def load_warm_start(
    folder: str | PathLike[str], *, kind: str, input_shape: tuple[int, int, int], cfg: LiverTrainConfig
) -> WarmStart:
    """Read a liver-net folder (``weights.pt`` loaded with ``weights_only=True``) to warm-start ``kind``.

    Raises
    ------
    ModuleError
        The folder cannot be read, or its network is not the one being trained
        (kind, input shape, head, kernel sizes, input / label normalisation):
        the message names the folder and the expected vs found settings.
    """
    folder = Path(folder)
    net = load_liver_net(folder)
    fresh = build_liver_model(kind, mean_variance=cfg.mean_variance, input_shape=input_shape,
                              kernel_size=cfg.kernel_size)
    expected = {"kind": kind, "input_shape": list(input_shape), "mean_variance": bool(cfg.mean_variance),
                "kernel_sizes": [int(k) for k in fresh.kernel_sizes], "input_normalisation": "zero_mean_std1",
                "label_mean": LIVER_FAT_MEAN, "label_std": LIVER_FAT_STD}
    found = {k: net.settings[k] for k in expected}
    diff = sorted(k for k in expected if expected[k] != found[k])
    if diff:
        raise ModuleError("the warm-start network is not the one being trained", path=folder, member=MODEL_JSON,
                          expected={k: expected[k] for k in diff}, found={k: found[k] for k in diff})
    state = {k: v.detach().cpu().clone() for k, v in net.model.state_dict().items()}
    fresh.load_state_dict(state, strict=True)  # the same settings build the same tensors; checked anyway
    log.info("warm start of the %s from %s (weights sha256 %s)", kind, folder, net.weights_sha256[:12])
    return WarmStart(folder, net.weights_sha256, state)
