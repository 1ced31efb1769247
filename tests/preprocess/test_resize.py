"""resize_linear_u8 must reproduce cv2.resize(..., INTER_LINEAR) on uint8 pixel for pixel."""

import numpy as np
import pytest

from ukbmri.preprocess.resize import resize_linear_u8


def test_hand_computed_row():
    # (d + 0.5) * 0.5 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamp, 1536/512, 512/1536, clamp;
    # 255 * 512 = 130560 >> 4 = 8160; 2048 * 8160 >> 16 = 255; (255 + 2) >> 2 = 64 (not round(63.75) via float)
    img = np.array([[0, 255]], dtype=np.uint8)
    assert resize_linear_u8(img, (4, 1)).tolist() == [[0, 64, 191, 255]]


def test_same_size_is_a_copy_and_2x_is_the_block_mean():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    out = resize_linear_u8(img, (8, 6))
    assert np.array_equal(out, img) and out is not img
    half = resize_linear_u8(img, (4, 3))
    blocks = img.reshape(3, 2, 4, 2).astype(int).sum(axis=(1, 3))
    assert np.array_equal(half, (blocks + 2) // 4)


def test_rejects_non_uint8_or_non_2d():
    with pytest.raises(ValueError):
        resize_linear_u8(np.zeros((4, 4), np.float32), (2, 2))
    with pytest.raises(ValueError):
        resize_linear_u8(np.zeros((4, 4, 3), np.uint8), (2, 2))


@pytest.mark.parametrize("rows", [340, 353, 356, 362, 371, 380])
def test_matches_cv2_on_mimir_shapes(rows):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(rows)
    noise = rng.integers(0, 256, (rows, 224 + 152), dtype=np.uint8)
    yy, xx = np.mgrid[0:rows, 0 : 224 + 152]
    smooth = (127.5 + 127 * np.sin(xx / 17.0) * np.cos(yy / 23.0)).astype(np.uint8)
    for img in (noise, smooth, np.where(noise > 200, 255, 0).astype(np.uint8)):
        assert np.array_equal(resize_linear_u8(img, (256, 256)), cv2.resize(img, (256, 256)))


def test_matches_cv2_on_random_shapes_up_and_down():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = rng.integers(1, 500, 2)
        dh, dw = rng.integers(1, 400, 2)
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ours = resize_linear_u8(img, (int(dw), int(dh)))
        ref = cv2.resize(img, (int(dw), int(dh)), interpolation=cv2.INTER_LINEAR)
        assert ours.shape == ref.shape == (dh, dw)
        assert np.array_equal(ours, ref), (h, w, dh, dw)
