"""Inputs: MultiEcho validation, ISMRM .mat files, NIfTI echoes, UK Biobank liver zips."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import scipy.io as sio

from ukbmri.errors import FitInputError
from ukbmri.io.ismrm import combine_coils, load_ismrm_mat, read_ismrm
from ukbmri.physics.inputs import input_stem, load_multiecho, multiecho_from_nifti
from ukbmri.physics.multiecho import MultiEcho
from ukbmri.physics.phantom import ring_phantom, uniform_te

TE = uniform_te(4, 1.5e-3, 2.2e-3)


def _images(shape=(6, 5, 2, 4)):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize(
    ("images", "te", "match"),
    [
        (np.ones((4, 4, 1, 2), np.float32), TE[:2], "too few echoes"),
        (np.ones((4, 4, 1, 4), np.float32), TE[:3], "echo time list"),
        (np.ones((4, 4, 4), np.float32), TE, "rank"),
        (np.full((4, 4, 1, 4), np.nan, np.float32), TE, "non-finite"),
        (np.ones((4, 4, 1, 4), np.float32), TE * 1e3, "milliseconds"),
        (np.ones((4, 4, 1, 4), np.float32), TE[::-1], "increasing"),
    ],
)
def test_multiecho_rejects_bad_input(images, te, match):
    with pytest.raises(FitInputError, match=match) as exc:
        MultiEcho(images, te, 1.5, source="bad.nii.gz")
    assert "bad.nii.gz" in str(exc.value)


def _write_mat(path, images, clockwise, *, te=TE, b0=1.5, mask=None):
    st = {"images": images, "TE": te[None, :], "FieldStrength": np.array([[b0]]),
          "PrecessionIsClockwise": np.array([[clockwise]])}
    if mask is not None:
        st["mask"] = mask
    sio.savemat(path, {"imDataParams": st})


def test_ismrm_precession_convention(tmp_path):
    img = _images((6, 5, 2, 1, 4))
    _write_mat(tmp_path / "cw.mat", img, 1, mask=np.ones((6, 5, 2), np.uint8))
    _write_mat(tmp_path / "ccw.mat", img, -1)
    cw, mask = read_ismrm(tmp_path / "cw.mat")
    ccw = load_ismrm_mat(tmp_path / "ccw.mat")
    assert cw.images.shape == (6, 5, 2, 4) and cw.is_complex
    np.testing.assert_allclose(cw.images, img[:, :, :, 0, :])  # clockwise: used as stored
    np.testing.assert_allclose(ccw.images, np.conj(img[:, :, :, 0, :]))  # otherwise conjugated
    np.testing.assert_allclose(cw.te_s, TE)
    assert cw.field_strength_t == 1.5 and cw.spacing is None and cw.affine_lps is None
    assert mask is not None and mask.all()


def test_ismrm_coil_combination_keeps_the_echo_phase_evolution():
    rng = np.random.default_rng(1)
    psi = 40.0
    base = np.exp(2j * np.pi * psi * TE)  # one voxel's echo train
    sens = rng.standard_normal(3) + 1j * rng.standard_normal(3)
    coils = (sens[:, None] * base[None, :])[None, None, None]  # (1, 1, 1, 3, 4)
    comb = combine_coils(coils)[0, 0, 0]
    # the combination is the echo train times a constant complex factor
    ratio = comb / base
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
    np.testing.assert_allclose(np.abs(ratio[0]), np.linalg.norm(sens), rtol=1e-6)


def test_ismrm_errors(tmp_path):
    sio.savemat(tmp_path / "other.mat", {"x": np.ones(3)})
    with pytest.raises(FitInputError, match="imDataParams"):
        load_ismrm_mat(tmp_path / "other.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(FitInputError, match="not a readable"):
        load_ismrm_mat(tmp_path / "junk.mat")
    _write_mat(tmp_path / "real.mat", np.ones((4, 4, 1, 1, 4)), 1)
    with pytest.raises(FitInputError, match="not complex"):
        load_ismrm_mat(tmp_path / "real.mat")


def test_nifti_4d_and_per_echo_files(tmp_path):
    rng = np.random.default_rng(2)
    data, _ = ring_phantom((12, 10, 2), te_s=TE, rng=rng)
    mag, ph = np.abs(data.images), np.angle(data.images)
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    nib.save(nib.Nifti1Image(mag.astype(np.float32), affine), tmp_path / "mag.nii.gz")
    nib.save(nib.Nifti1Image(ph.astype(np.float32), affine), tmp_path / "ph.nii.gz")
    per_echo = []
    for e in range(4):
        p = tmp_path / f"echo{e}.nii"
        nib.save(nib.Nifti1Image(mag[..., e].astype(np.float32), affine), p)
        per_echo.append(p)
    me4 = multiecho_from_nifti([tmp_path / "mag.nii.gz"], TE * 1e3, phase_paths=[tmp_path / "ph.nii.gz"])
    assert me4.is_complex and me4.shape == (12, 10, 2)
    np.testing.assert_allclose(me4.images, data.images, rtol=1e-4, atol=1e-2)
    assert me4.spacing == (2.0, 2.0, 5.0)
    np.testing.assert_allclose(me4.affine_lps, np.diag([-1, -1, 1, 1]) @ affine)
    me3, mask = load_multiecho(per_echo, te_ms=TE * 1e3)
    assert mask is None and not me3.is_complex and me3.images.shape == (12, 10, 2, 4)
    with pytest.raises(FitInputError, match="echo times"):
        load_multiecho([tmp_path / "mag.nii.gz"])
    with pytest.raises(FitInputError, match="does not match"):
        load_multiecho([tmp_path / "mag.nii.gz"], te_ms=[1.0, 2.0, 3.0])
    with pytest.raises(FitInputError, match="single NIfTI"):
        load_multiecho([per_echo[0]], te_ms=[1.0, 2.0, 3.0])
    with pytest.raises(FitInputError, match="unsupported"):
        load_multiecho([_touch(tmp_path / "x.txt")])


def _touch(p):
    p.write_text("x")
    return p


def test_input_stem():
    assert input_stem("a/b/12.mat") == "12"
    assert input_stem("x.nii.gz") == "x"
    assert input_stem("1000001_20203_2_0.zip") == "1000001_20203_2_0"


def test_ukb_zips_become_multiecho(tmp_path):
    synth = pytest.importorskip("ukbmri.synth")
    from ukbmri.io import read_zip
    from ukbmri.physics.inputs import multiecho_from_zip

    rng = np.random.default_rng(3)
    (p,) = synth.sample_participants(1, rng)
    paths = synth.write_participant(p, tmp_path, fields=(20203, 20254), rng=rng)
    gre = read_zip(paths[20203])
    me = multiecho_from_zip(gre)
    mag = next(s for s in gre.series if s.image_kind == "magnitude")
    rows, cols = mag.shape
    assert me.is_complex and me.images.shape == (cols, rows, 1, 10)
    np.testing.assert_allclose(me.te_s * 1e3, np.sort(mag.echo_times_ms), atol=1e-6)
    # x is the column index: the first echo's magnitude equals the DICOM pixels transposed
    first = np.asarray(mag.pixels)[np.argmin(mag.echo_times_ms)]
    np.testing.assert_allclose(np.abs(me.images[:, :, 0, 0]), first.T, rtol=1e-5, atol=1e-3)
    # affine: index (x, y) -> LPS along the DICOM row / column directions
    ipp = np.asarray(mag.positions[0])
    np.testing.assert_allclose(me.affine_lps[:3, 3], ipp)
    np.testing.assert_allclose(me.affine_lps[:3, 0], np.asarray(mag.orientation[:3]) * mag.pixel_spacing[1])
    ideal = multiecho_from_zip(read_zip(paths[20254]))
    assert ideal.is_complex and ideal.n_echoes == 6
    mag_only = multiecho_from_zip(read_zip(paths[20254]), dynamics="magnitude")
    assert not mag_only.is_complex
    # the complex average of aligned dynamics keeps the magnitude level of the magnitude average
    body = np.abs(mag_only.images[..., 0]) > 200
    ratio = np.median(np.abs(ideal.images[..., 0])[body] / mag_only.images[..., 0][body])
    assert 0.97 < ratio < 1.01


def _write_mat73(path, fields):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte text header, arrays in
    column-major order (so h5py sees the axes reversed), complex as a {real, imag} compound."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as h:
        g = h.create_group("imDataParams")
        for name, a in fields.items():
            a = np.asarray(a)
            if np.iscomplexobj(a):
                c = np.empty(a.shape, dtype=[("real", "<f4"), ("imag", "<f4")])
                c["real"], c["imag"] = a.real, a.imag
                a = c
            g.create_dataset(name, data=a.T)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Dec  1 12:00:00 2026 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def test_ismrm_v73_hdf5_file(tmp_path):
    img = _images((6, 5, 2, 1, 4))
    _write_mat73(tmp_path / "v73.mat", {"images": img, "TE": TE[None, :], "FieldStrength": np.array([[3.0]]),
                                        "PrecessionIsClockwise": np.array([[0.0]]),
                                        "mask": np.ones((6, 5, 2), np.uint8)})
    data, mask = read_ismrm(tmp_path / "v73.mat")
    assert data.images.shape == (6, 5, 2, 4) and data.field_strength_t == 3.0
    np.testing.assert_allclose(data.images, np.conj(img[:, :, :, 0, :]), rtol=1e-6)  # not clockwise: conjugated
    np.testing.assert_allclose(data.te_s, TE)
    assert mask is not None and mask.shape == (6, 5, 2)
