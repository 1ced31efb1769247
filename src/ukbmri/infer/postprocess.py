"""From standardised network outputs to calibrated predictions in target units.

For target ``t`` with training mean ``m_t``, standard deviation ``sd_t``,
variance calibration factor ``c_t`` and divisor ``d_t``, a network output
pair ``(mu', s)`` (mean and log variance in standardised units) becomes::

    mean     = (mu' * sd_t + m_t) / d_t
    variance = exp(s) * sd_t**2 * c_t / d_t**2

MIMIR divides the variance by ``d_t`` instead of ``d_t**2``; that is a bug
(the variance of ``X / d`` is ``Var(X) / d**2``) that only stays hidden
because every published module uses ``d_t = 1``. ukbmri uses ``d_t**2``, so
results agree with MIMIR exactly whenever the divisor is 1.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Protocol

import numpy as np

__all__ = ["postprocess", "postprocess_arrays", "normal_interval", "physical_predictions"]


class _HasConstants(Protocol):
    mean: np.ndarray
    sd: np.ndarray
    calibration: np.ndarray

    @property
    def divisors(self) -> np.ndarray: ...


def postprocess_arrays(
    mu: np.ndarray,
    logvar: np.ndarray,
    mean: np.ndarray,
    sd: np.ndarray,
    calibration: np.ndarray,
    divisor: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the module formula to ``(N, T)`` standardised means and log variances.

    Returns float64 ``(mean, variance)`` arrays of shape ``(N, T)``.
    """
    mu = np.asarray(mu, dtype=np.float64)
    logvar = np.asarray(logvar, dtype=np.float64)
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f"mu and logvar must both be (N, T), got {mu.shape} and {logvar.shape}")
    t = mu.shape[1]
    mean, sd, cal = (np.asarray(a, dtype=np.float64) for a in (mean, sd, calibration))
    div = np.broadcast_to(np.asarray(divisor, dtype=np.float64), (t,))
    for name, a in (("mean", mean), ("sd", sd), ("calibration", cal)):
        if a.shape != (t,):
            raise ValueError(f"{name} must have shape ({t},), got {a.shape}")
    with np.errstate(over="ignore"):  # exp of a huge log variance is inf, not an error
        var = np.exp(logvar) * sd**2 * cal
    return (mu * sd + mean) / div, var / div**2


def postprocess(raw: np.ndarray, module: _HasConstants) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2T)`` raw network outputs -> ``(mean, variance)``, each ``(N, T)`` in target units.

    ``raw`` is read as MIMIR does, ``raw.reshape(N, T, 2)``: column ``2t`` is
    the mean, ``2t + 1`` the log variance of target ``t``.
    """
    raw = np.asarray(raw, dtype=np.float64)
    t = len(module.mean)
    if raw.ndim != 2 or raw.shape[1] != 2 * t:
        raise ValueError(f"expected raw outputs of shape (N, {2 * t}), got {raw.shape}")
    pairs = raw.reshape(raw.shape[0], t, 2)
    return postprocess_arrays(
        pairs[:, :, 0], pairs[:, :, 1], module.mean, module.sd, module.calibration, module.divisors
    )


def normal_interval(
    mean: np.ndarray, var: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Central interval of a normal distribution: ``mean -+ z * sqrt(var)``.

    ``z = Phi^-1(0.5 + level / 2)`` (1.95996... for 0.95).

    Raises
    ------
    ValueError
        When ``level`` is not in (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    half = z * np.sqrt(np.asarray(var, dtype=np.float64))
    mean = np.asarray(mean, dtype=np.float64)
    return mean - half, mean + half


def physical_predictions(module, mean: np.ndarray, var: np.ndarray, level: float = 0.95):
    """Intervals, QC flags and physically bounded values of ``(N, T)`` predictions.

    Runs :func:`~ukbmri.infer.plausibility.check_predictions` on the raw means and
    :func:`normal_interval` ends, then clips means and ends of every target into
    its physical range (:func:`~ukbmri.infer.plausibility.clip_to_physical`). Returns
    ``(mean, lo, hi, findings)``: three float64 ``(N, T)`` arrays and one list of
    :class:`~ukbmri.preprocess.qc.QcFinding` per participant (see ``docs/qc_flags.md``).
    """
    from ukbmri.infer.plausibility import check_predictions, clip_to_physical

    mean = np.atleast_2d(np.asarray(mean, dtype=np.float64))
    lo, hi = normal_interval(mean, np.atleast_2d(np.asarray(var, dtype=np.float64)), level)
    findings = check_predictions(module, mean, lo, hi)
    out = [np.empty_like(mean), np.empty_like(mean), np.empty_like(mean)]
    for j, t in enumerate(module.targets):
        cols = clip_to_physical(t.name, t.unit, mean[:, j], lo[:, j], hi[:, j])
        for k in range(3):
            out[k][:, j] = cols[k]
    return out[0], out[1], out[2], findings
