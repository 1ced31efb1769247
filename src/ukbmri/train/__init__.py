"""Training, cross-validation, calibration and metrics for inference modules.

=================  ==========================================================
module             what
=================  ==========================================================
``losses``         masked mean-variance loss (MIMIR), log-cosh, single-head NLL
``metrics``        MAE, MAPE, R^2, ICC(A,1), Bland-Altman, coverage, AUCE, ...
``calibration``    variance calibration factors (bisection, provably ends)
``data``           cached MIMIR images + targets table, translation augmentation
``loop``           the training loop (Adam, lr step, epoch shuffles)
``crossval``       K-fold CV by participant -> module folder
``plots``          per-target agreement / calibration / sparsification PNGs
=================  ==========================================================

Names are re-exported lazily, so ``import ukbmri.train.metrics`` does not pull
in torch or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "gaussian_nll_with_gaps": "losses",
    "gaussian_nll_masked": "losses",
    "log_cosh_masked": "losses",
    "mae": "metrics",
    "mape": "metrics",
    "r2": "metrics",
    "pearson_r": "metrics",
    "icc_a1": "metrics",
    "bland_altman": "metrics",
    "coverage": "metrics",
    "auce": "metrics",
    "sparsification": "metrics",
    "binary_accuracy": "metrics",
    "regression_report": "metrics",
    "calibration_factor": "calibration",
    "calibration_factors": "calibration",
    "calibration_search": "calibration",
    "load_body_data": "data",
    "random_translate": "data",
    "translate": "data",
    "fit": "loop",
    "predict_raw": "loop",
    "train_body_module": "crossval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ukbmri.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ukbmri.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
