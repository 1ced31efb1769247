"""The liver localiser: patient frame, network folder, training, and the bundled weights on phantoms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ukbmri.errors import LiverNotFoundError, ModuleError
from ukbmri.models.liver_unet import LiverUNet
from ukbmri.physics.liver_frame import GRID, SliceFrame, default_posterior, slice_channels
from ukbmri.physics.liver_locate import bundled_localiser, load_localiser, save_localiser
from ukbmri.physics.liver_roi import patient_right_direction, posterior_direction
from ukbmri.synth.liver_stress import stress_case
from ukbmri.train.liver_seg import TrainSettings, dice, frame_batch, make_samples, train_localiser


def _blob(shape, centre, r):
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= r * r


def test_default_posterior_follows_the_display_convention():
    # (x, y) arrays, patient right at low x: posterior is +y
    np.testing.assert_allclose(default_posterior(np.array([-1.0, 0.0])), [0.0, 1.0])
    # ISMRM (row, column) shown first axis down, right on the image's left (low column): posterior +row
    np.testing.assert_allclose(default_posterior(np.array([0.0, -1.0])), [1.0, 0.0])
    np.testing.assert_allclose(default_posterior(np.array([0.0, 1.0])), [1.0, 0.0])


@pytest.mark.parametrize("transpose", [False, True])
def test_frame_puts_the_patient_right_first_and_round_trips(transpose):
    shape, sp = (90, 70), (2.0, 2.5)
    body = _blob(shape, (45, 35), 30)
    organ = _blob(shape, (30, 30), 8)  # at low x: the patient's right (LPS affine with +x = left)
    right, post = np.array([-1.0, 0.0]), np.array([0.0, 1.0])
    if transpose:  # the same slice stored (y, x)
        body, organ, sp, right, post = body.T, organ.T, sp[::-1], right[::-1], post[::-1]
    fr = SliceFrame.build(body, sp, right, post)
    f = fr.to_frame(organ.astype(np.float32))
    ci, cj = np.argwhere(f > 0.5).mean(axis=0)
    # the organ is 30 mm to the patient's right of the body centre and 12.5 mm anterior: frame pixels of 3 mm
    np.testing.assert_allclose([ci, cj], [(GRID - 1) / 2 - 10.0, (GRID - 1) / 2 - 12.5 / 3], atol=0.5)
    back = fr.from_frame(f) > 0.5
    assert dice(back, organ) > 0.9


def test_channels_are_scale_free_and_masked():
    rng = np.random.default_rng(0)
    w, f = rng.uniform(0.5, 1, (20, 20)), rng.uniform(0, 0.2, (20, 20))
    ff = 100 * f / (w + f)
    r2 = rng.uniform(20, 400, (20, 20))
    body = _blob((20, 20), (10, 10), 7)
    a = slice_channels(w, f, ff, r2, body)
    b = slice_channels(1000 * w, 1000 * f, ff, r2, body)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert a.shape == (4, 20, 20) and np.all(a[:, ~body] == 0)


def test_localiser_folder_round_trip_and_bad_folders(tmp_path):
    torch.manual_seed(0)
    m = LiverUNet(width=4)
    folder = save_localiser(m, tmp_path / "loc", training={"seed": 1})
    info = json.loads((folder / "model.json").read_text())
    assert info["demonstration_only"] is True and info["kind"] == "liver_localiser"
    loc = load_localiser(folder)
    x = torch.randn(1, 4, GRID, GRID)
    with torch.no_grad():
        torch.testing.assert_close(loc.model(x), m.eval()(x))
    info["kind"] = "teacher"
    (folder / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModuleError, match="not a liver localiser"):
        load_localiser(folder)
    info["kind"] = "liver_localiser"
    (folder / "model.json").write_text(json.dumps(info))
    torch.save({"x": object()}, folder / "weights.pt")  # needs pickled code: refused
    with pytest.raises(ModuleError, match="weights"):
        load_localiser(folder)


def test_training_learns_the_liver_on_a_few_slices():
    samples = make_samples(np.random.default_rng(3), 6, no_liver_share=0.0, share_3t=0.0)
    _, y = frame_batch(samples, None)
    assert y.sum() > 0 and frame_batch(samples, np.random.default_rng(0))[0].shape == (6, 4, GRID, GRID)
    xr, yr = frame_batch(samples, np.random.default_rng(0), randomise_contrast=True)
    assert np.isfinite(xr).all() and xr[:, 0].max() <= 2.0
    assert all(np.all(xr[k, :3][:, xr[k, 3] == 0] == 0) for k in range(len(xr)))  # nothing outside the body
    model, hist = train_localiser(samples, TrainSettings(epochs=3, batch_size=3, lr=5e-3, width=4,
                                                          validation_fraction=0.2))
    assert len(hist["train_loss"]) == 3 and hist["train_loss"][-1] < hist["train_loss"][0]


def test_bundled_localiser_marks_the_liver_and_finds_no_liver_where_there_is_none():
    from ukbmri.physics.liver import liver_fat_from_multiecho, roi_maps_for
    from ukbmri.physics.liver_roi import body_mask

    loc = bundled_localiser()
    assert loc.info["demonstration_only"] is True
    rng = np.random.default_rng(20261206)
    scores = []
    for proto in ("gre", "ideal"):
        c = stress_case(rng, variant="train", protocol=proto, pdff_percent=20.0, r2star_per_s=60.0, noise_scale=1.0)
        m = roi_maps_for(c.data)
        aff = c.data.affine_lps
        p = loc.probability(m.water[:, :, 0], m.fat[:, :, 0], m.ff_percent[:, :, 0], m.r2star_per_s[:, :, 0],
                            body_mask(m.mask[:, :, 0]), c.data.spacing[:2], patient_right_direction(aff),
                            posterior_direction(aff))
        scores.append(dice(p > 0.5, c.liver))
        r = liver_fat_from_multiecho(c.data)
        assert r.qc["roi_localiser"]["used"] and r.qc["roi_localiser"]["fingerprint"] == loc.fingerprint
        assert c.liver[r.mask].mean() > 0.95 and abs(r.pdff_percent - 20.0) < 1.0
    assert min(scores) > 0.85, scores
    empty = stress_case(rng, variant="train", protocol="gre", with_liver=False, noise_scale=1.0)
    try:
        r = liver_fat_from_multiecho(empty.data)
    except LiverNotFoundError:
        return
    assert "liver_roi_unreliable" in r.flags  # a value on a slice without liver must be flagged


class _FixedLocaliser:
    """A stand-in network that proposes a fixed probability map."""

    fingerprint = "fixed"

    def __init__(self, prob):
        self.prob = prob

    def probability(self, *args, **kwargs):
        return self.prob


def test_physics_rejects_a_proposal_that_is_not_liver_like_tissue():
    from ukbmri.physics.liver import liver_fat_from_multiecho

    c = stress_case(np.random.default_rng(7), variant="train", protocol="gre", pdff_percent=10.0,
                    r2star_per_s=50.0, noise_scale=1.0)
    rules = liver_fat_from_multiecho(c.data, localiser=None)
    assert rules.qc["roi_localiser"] is None
    # the whole slice (mostly fat, air and muscle): rejected, the image rules decide -> the same result
    whole = liver_fat_from_multiecho(c.data, localiser=_FixedLocaliser(np.ones(c.liver.shape)))
    rec = whole.qc["roi_localiser"]
    assert not rec["used"] and "liver-like tissue" in rec["rejected"]
    np.testing.assert_array_equal(whole.mask, rules.mask)
    assert whole.pdff_percent == rules.pdff_percent
    # nothing proposed: the rules too
    none = liver_fat_from_multiecho(c.data, localiser=_FixedLocaliser(np.zeros(c.liver.shape)))
    assert not none.qc["roi_localiser"]["used"] and none.pdff_percent == rules.pdff_percent
    # the drawn liver proposed: used; the ROI is its eroded, liver-like interior, the value right
    truth = liver_fat_from_multiecho(c.data, localiser=_FixedLocaliser(c.liver.astype(float)))
    assert truth.qc["roi_localiser"]["used"]
    assert np.all(c.liver[truth.mask]) and truth.mask.sum() > 200 and abs(truth.pdff_percent - 10.0) < 0.5
