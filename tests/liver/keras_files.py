"""Keras files of the published ml4h liver architectures, for tests (needs the ``keras`` extra).

Load this file with the ``keras_files`` fixture of tests/liver/conftest.py, or
elsewhere the same way (``--import-mode=importlib`` has no test packages)::

    spec = importlib.util.spec_from_file_location("ukbmri_tests_keras_files",
                                                  REPO / "tests" / "liver" / "keras_files.py")

Then::

    kf = keras_files                       # the module
    keras = kf.keras_or_skip()             # KERAS_BACKEND=torch; pytest.skip without keras
    predict = kf.write_ml4h_teacher_h5(tmp_path / "teacher.h5", seed=1, kernel=3, input_hw=(16, 16))
    want = predict(tensors)                # (N, 10, 16, 16) raw magnitudes -> (N,) liver fat %, as ml4h

``write_ml4h_teacher_h5`` / ``write_ml4h_student_h5`` save a full Keras model
(``model.save``: weights + model JSON, the published files' layout) with seeded
random weights and return a function computing what ml4h computes for raw
tensors: per-sample ZeroMeanStd1 (or none), the Keras model, then
``4.64437 * y + 3.91012``. The returned function has the Keras model as
``predict.model``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

LABEL_MEAN, LABEL_STD = 3.91012, 4.64437


def keras_or_skip():
    """The keras module on the torch backend; ``pytest.skip`` when it is missing or on another backend."""
    import pytest

    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    k = pytest.importorskip("keras")
    if k.backend.backend() != "torch":
        pytest.skip(f"keras backend is {k.backend.backend()}, not torch")
    return k


def build_ml4h_keras(keras, kind: str, *, kernel: int | tuple[int, ...] = 3, input_hw=None, channels=None):
    """The published Keras model layer for layer (names as in the diagrams); any square kernel size(s)."""
    L = keras.layers
    ks = (kernel,) * 10 if isinstance(kernel, int) else tuple(kernel)
    n = {"conv": 0 if kind == "teacher" else 1, "act": 0 if kind == "teacher" else 1, "k": 0}

    def relu(x):
        j = n["act"]
        n["act"] += 1
        return L.Activation("relu", name=f"activation_{j}" if j else "activation")(x)

    def conv(x, filters):
        i = n["conv"]
        n["conv"] += 1
        k = ks[n["k"]]
        n["k"] += 1
        return relu(L.Conv2D(filters, k, padding="same", name=f"conv2d_{i}" if i else "conv2d")(x))

    if kind == "teacher":
        h, w = input_hw or (160, 160)
        inp = keras.Input((h, w, channels or 10), name="input_gre_mullti_echo_10_te_liver_continuous")
        x = L.MaxPooling2D(2)(conv(inp, 32))
        for b, width in enumerate((32, 24, 16)):
            if b:
                x = L.MaxPooling2D(2)(x)
            dense = [x]
            for i in range(3):
                x = conv(x, width)
                if i < 2:
                    dense.append(x)
                    x = L.Concatenate()(dense)
        dense_name = "dense"
    else:
        h, w = input_hw or (232, 256)
        inp = keras.Input((h, w, channels or 36), name="input_lms_ideal_optimised_low_flip_6dyn_root_array")
        x = conv(inp, 32)
        for width in (32, 24, 16):
            x = L.MaxPooling2D(2)(conv(x, width))
            dense = [x]
            for _ in range(2):
                x = conv(x, width)
                dense.append(x)
                x = L.Concatenate()(dense)
        dense_name = "dense_1"
    x = L.Flatten()(x)
    x = relu(L.Dense(16, name=dense_name)(x))
    x = relu(L.Dense(64, name="embed")(x))
    out = L.Dense(1, name="output_liver_fat_sentinel_prediction_continuous")(x)
    return keras.Model(inp, out)


def seed_weights(model, seed: int) -> None:
    """He-normal kernels and small random biases from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        k, b = ws
        fan_in = int(np.prod(k.shape[:-1]))
        layer.set_weights([rng.normal(0, np.sqrt(2.0 / fan_in), k.shape).astype("float32"),
                           rng.normal(0, 0.1, b.shape).astype("float32")])  # fmt: skip


def ml4h_zero_mean_std1(x: np.ndarray) -> np.ndarray:
    """ml4h's ZeroMeanStd1 on one sample, in float32 as ml4h computes it."""
    t = np.array(x, dtype=np.float32)
    t -= np.mean(t)
    t /= np.std(t) + 1e-7
    return t


def keras_percent(model, tensors_nchw: np.ndarray, normalisation: str = "zero_mean_std1") -> np.ndarray:
    """What ml4h predicts for raw ``(N, C, H, W)`` tensors, in liver fat %."""
    x = np.asarray(tensors_nchw, dtype=np.float32)
    if normalisation == "zero_mean_std1":
        x = np.stack([ml4h_zero_mean_std1(t) for t in x])
    x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = np.asarray(model.predict(x, verbose=0), dtype=np.float64).reshape(-1)
    return y * LABEL_STD + LABEL_MEAN


def _write(path, kind, seed, kernel, input_hw, normalisation) -> Callable[[np.ndarray], np.ndarray]:
    keras = keras_or_skip()
    model = build_ml4h_keras(keras, kind, kernel=kernel, input_hw=input_hw)
    seed_weights(model, seed)
    path = Path(path)
    model.save(path)  # ".h5": legacy Keras layout with model_config, as the published files

    def predict(tensors_nchw: np.ndarray) -> np.ndarray:
        return keras_percent(model, tensors_nchw, normalisation)

    predict.model = model  # type: ignore[attr-defined]
    return predict


def write_ml4h_teacher_h5(path, seed: int = 0, kernel: int | tuple[int, ...] = 3, input_hw=(160, 160),
                          normalisation: str = "zero_mean_std1") -> Callable[[np.ndarray], np.ndarray]:
    """Save a seeded ml4h teacher as a Keras ``.h5``; returns raw ``(N, 10, H, W)`` -> liver fat % (N,)."""
    return _write(path, "teacher", seed, kernel, input_hw, normalisation)


def write_ml4h_student_h5(path, seed: int = 0, kernel: int | tuple[int, ...] = 3, input_hw=(232, 256),
                          normalisation: str = "none") -> Callable[[np.ndarray], np.ndarray]:
    """Save a seeded ml4h student as a Keras ``.h5``; returns raw ``(N, 36, H, W)`` -> liver fat % (N,).

    Its input layer is named ``..._root_array`` like the published student's, so
    ukbmri's default input normalisation for it is ``"none"``.
    """
    return _write(path, "student", seed, kernel, input_hw, normalisation)
