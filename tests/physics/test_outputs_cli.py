"""Output files of ``ukbmri fatwater`` and the command's error handling."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ukbmri.cli.main import main
from ukbmri.physics.phantom import ring_phantom, uniform_te
from ukbmri.physics.spatial import ls_unwrap

TE = uniform_te(6, 1.2e-3, 2.0e-3)
MAPS = ("ff_percent", "r2star_per_s", "b0_hz", "water", "fat", "residual")


@pytest.fixture(scope="module")
def nifti_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("nifti")
    rng = np.random.default_rng(21)
    data, truth = ring_phantom((40, 36, 2), te_s=TE, snr=60.0, rng=rng)
    affine = np.diag([2.5, 2.5, 6.0, 1.0])
    affine[:3, 3] = (-50.0, -40.0, 10.0)
    nib.save(nib.Nifti1Image(np.abs(data.images).astype(np.float32), affine), d / "scan.nii.gz")
    nib.save(nib.Nifti1Image(np.angle(data.images).astype(np.float32), affine), d / "scan_phase.nii.gz")
    np.save(d / "roi.npy", truth.liver)
    return d, data, truth, affine


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_complex_writes_every_file(nifti_case, tmp_path, capsys):
    d, data, truth, affine = nifti_case
    out = tmp_path / "out"
    code, stdout, _ = _run(capsys, "fatwater", str(d / "scan.nii.gz"), "--out", str(out),
                           "--te", ",".join(f"{t * 1e3:g}" for t in TE), "--phase", str(d / "scan_phase.nii.gz"),
                           "--roi", str(d / "roi.npy"), "--field-strength", "1.5")
    assert code == 0
    for name in MAPS:
        arr = np.load(out / f"scan_{name}.npy")
        assert arr.dtype == np.float32 and arr.shape == (40, 36, 2)
        img = nib.load(out / f"scan_{name}.nii.gz")
        assert img.shape == (40, 36, 2)
        np.testing.assert_allclose(img.affine, affine, atol=1e-5)  # the input's geometry is kept
    assert np.load(out / "scan_mask.npy").dtype == bool
    assert (out / "scan_montage.png").stat().st_size > 5000
    ff = np.load(out / "scan_ff_percent.npy")
    assert abs(np.nanmedian(ff[truth.liver]) - 8.0) < 1.0
    assert np.nanmedian(ff[truth.subcutaneous_fat]) > 90
    summary = json.loads((out / "scan_summary.json").read_text())
    assert summary["method"] == "complex" and summary["identity_affine"] is False
    table = pd.read_csv(out / "scan_summary.csv")
    assert list(table["region"]) == ["mask", "roi"]
    roi_row = table.set_index("region").loc["roi"]
    assert abs(roi_row["ff_median_percent"] - 8.0) < 1.0
    assert abs(roi_row["r2star_median_per_s"] - 40.0) < 3.0
    assert "roi: n=" in stdout and "mask: n=" in stdout


def test_cli_magnitude_and_identity_warning(tmp_path, capsys, caplog):
    import scipy.io as sio

    rng = np.random.default_rng(22)
    data, truth = ring_phantom((32, 30, 1), te_s=TE, snr=60.0, rng=rng)
    st = {"images": data.images[:, :, :, None, :], "TE": TE[None, :], "FieldStrength": np.array([[1.5]]),
          "PrecessionIsClockwise": np.array([[1]])}
    sio.savemat(tmp_path / "case.mat", {"imDataParams": st})
    out = tmp_path / "o"
    code, _, err = _run(capsys, "fatwater", str(tmp_path / "case.mat"), "--out", str(out), "--method", "magnitude")
    assert code == 0
    geometry_warnings = [r for r in caplog.records if "no geometry" in r.getMessage()]
    assert len(geometry_warnings) == 1 and "no geometry" not in err  # warned once
    b0 = np.load(out / "case_b0_hz.npy")
    assert b0.shape == (32, 30, 1) and np.all(np.isnan(b0))  # no field map from magnitudes
    # one voxel size everywhere: the assumed default, in the NIfTI files and marked in the summary
    np.testing.assert_allclose(nib.load(out / "case_ff_percent.nii.gz").affine, np.diag([-1.5, -1.5, 5.0, 1.0]))
    meta = json.loads((out / "case_summary.json").read_text())
    assert meta["spacing_mm"] == [1.5, 1.5, 5.0] and meta["spacing_assumed"] is True
    assert meta["info"]["branch"] == "best"


def test_cli_spacing_option_sets_every_output(tmp_path, capsys):
    import scipy.io as sio

    rng = np.random.default_rng(23)
    data, truth = ring_phantom((32, 30, 1), te_s=TE, snr=60.0, rng=rng)
    st = {"images": data.images[:, :, :, None, :], "TE": TE[None, :], "FieldStrength": np.array([[1.5]]),
          "PrecessionIsClockwise": np.array([[1]])}
    sio.savemat(tmp_path / "case.mat", {"imDataParams": st})
    out = tmp_path / "o"
    code, _, _ = _run(capsys, "fatwater", str(tmp_path / "case.mat"), "--out", str(out), "--spacing", "2.5,2.5,6",
                      "--no-montage")
    assert code == 0
    meta = json.loads((out / "case_summary.json").read_text())
    assert meta["spacing_mm"] == [2.5, 2.5, 6.0] and meta["spacing_assumed"] is False
    assert meta["info"]["spacing_mm"] == [2.5, 2.5, 6.0]  # the complex fit regularised with it
    np.testing.assert_allclose(nib.load(out / "case_ff_percent.nii.gz").affine, np.diag([-2.5, -2.5, 6.0, 1.0]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.nii.gz", "--te", "1,2,3"], "not found"),
        (["scan.nii.gz"], "echo times"),
        (["scan.nii.gz", "--te", "1,2"], "does not match"),
        (["scan.nii.gz", "--te", "1.2,3.2,5.2,7.2,9.2,11.2", "--method", "complex"], "phase"),
        (["scan.nii.gz", "--te", "1.2,3.2,5.2,7.2,9.2,11.2", "--roi", "bad_roi.npy"], "ROI mask shape"),
        (["two_echoes.nii.gz", "--te", "1.2,3.2"], "too few echoes"),
        (["nonfinite.nii.gz", "--te", "1.2,3.2,5.2,7.2,9.2,11.2"], "non-finite"),
        (["rank2.nii.gz", "--te", "1.2,3.2,5.2"], "wrong rank"),
    ],
)
def test_cli_bad_input_is_one_error_line(nifti_case, tmp_path, capsys, args, message):
    d, data, _, affine = nifti_case
    np.save(d / "bad_roi.npy", np.zeros((3, 3, 3), bool))
    mag = np.abs(data.images).astype(np.float32)
    nib.save(nib.Nifti1Image(mag[..., :2], affine), d / "two_echoes.nii.gz")
    bad = mag.copy()
    bad[3, 4, 1, 2] = np.inf
    nib.save(nib.Nifti1Image(bad, affine), d / "nonfinite.nii.gz")
    nib.save(nib.Nifti1Image(mag[:, :, 0, 0], affine), d / "rank2.nii.gz")
    args = [str(d / a) if a.endswith((".nii.gz", ".npy")) else a for a in args]
    code, _, err = _run(capsys, "fatwater", *args, "--out", str(tmp_path / "o"))
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]


def test_ls_unwrap_recovers_a_smooth_field():
    x, y = np.meshgrid(np.linspace(-1, 1, 60), np.linspace(-1, 1, 50), indexing="ij")
    true = 9.0 * x ** 2 + 6.0 * y + 3.0 * x * y  # several wraps
    got = ls_unwrap(np.angle(np.exp(1j * true)))
    d = got - true
    assert np.ptp(d) < 1e-6  # equal up to a constant


def test_cli_spectrum_option(nifti_case, tmp_path, capsys):
    """--spectrum replaces the six-peak model: a single-peak model misreads six-peak data."""
    d, _, truth, _ = nifti_case
    te = ",".join(f"{t * 1e3:g}" for t in TE)
    medians = {}
    for name, extra in (("six", []), ("one", ["--spectrum", "1.3:1"])):
        out = tmp_path / name
        code, _, _ = _run(capsys, "fatwater", str(d / "scan.nii.gz"), "--out", str(out), "--te", te,
                          "--method", "magnitude", "--no-montage", *extra)
        assert code == 0
        medians[name] = float(np.nanmedian(np.load(out / "scan_ff_percent.npy")[truth.liver]))
    assert abs(medians["six"] - 8.0) < 1.0
    assert abs(medians["one"] - 8.0) > 1.5
    code, _, err = _run(capsys, "fatwater", str(d / "scan.nii.gz"), "--out", str(tmp_path / "x"), "--te", te,
                        "--spectrum", "1.3")
    assert code == 2 and "PPM:AMPLITUDE" in err


def test_cli_liver_on_a_mat_without_geometry(tmp_path, capsys):
    import scipy.io as sio

    rng = np.random.default_rng(24)
    data, truth = ring_phantom((72, 64, 1), te_s=TE, snr=80.0, liver_ff_percent=8.0, liver_r2star_per_s=40.0,
                               spacing=(3.0, 3.0, 6.0), rng=rng)
    # store like the ISMRM toolbox: rows = anterior-posterior, columns = patient right -> left
    images = np.transpose(data.images, (1, 0, 2, 3))
    st = {"images": images[:, :, :, None, :], "TE": TE[None, :], "FieldStrength": np.array([[1.5]]),
          "PrecessionIsClockwise": np.array([[1]])}
    sio.savemat(tmp_path / "case.mat", {"imDataParams": st})
    out = tmp_path / "o"
    code, stdout, _ = _run(capsys, "fatwater", str(tmp_path / "case.mat"), "--out", str(out), "--liver",
                           "--spacing", "3,3,6", "--no-montage")
    assert code == 0
    roi = np.load(out / "case_liver_roi.npy")
    assert roi.shape == (64, 72, 1) and roi.dtype == bool and roi.sum() > 50
    assert np.all(np.transpose(truth.liver, (1, 0, 2))[roi])  # inside the drawn liver
    table = pd.read_csv(out / "case_summary.csv").set_index("region")
    assert {"liver_slice_0", "liver"} <= set(table.index)
    row = table.loc["liver"]
    assert abs(row["pdff_percent"] - 8.0) < 1.0
    assert row["pdff_ci95_low_percent"] <= row["pdff_percent"] <= row["pdff_ci95_high_percent"]
    assert abs(table.loc["liver_slice_0", "ff_median_percent"] - 8.0) < 1.0  # the voxel median, kept beside it
    meta = json.loads((out / "case_summary.json").read_text())
    assert meta["liver"]["right"] == "image-left" and abs(meta["liver"]["pdff_percent"] - 8.0) < 1.0
    assert "liver: n=" in stdout


def test_cli_liver_without_a_liver_still_writes_the_maps(tmp_path, capsys):
    import scipy.io as sio

    x, y = np.meshgrid(np.linspace(-1, 1, 40), np.linspace(-1, 1, 48), indexing="ij")
    body = ((x / 0.9) ** 2 + (y / 0.7) ** 2 <= 1)[:, :, None]
    from ukbmri.physics.spectrum import signal

    s = signal(0.08 * body, 0.92 * body, np.full(body.shape, 35.0), TE, 1.5)
    s = s + 0.01 * np.random.default_rng(1).standard_normal(s.shape)
    st = {"images": s[:, :, :, None, :].astype(np.complex64), "TE": TE[None, :], "FieldStrength": np.array([[1.5]]),
          "PrecessionIsClockwise": np.array([[1]])}
    sio.savemat(tmp_path / "fat.mat", {"imDataParams": st})
    out = tmp_path / "o"
    code, _, _ = _run(capsys, "fatwater", str(tmp_path / "fat.mat"), "--out", str(out), "--liver", "--no-montage")
    assert code == 0
    assert not np.load(out / "fat_liver_roi.npy").any()
    meta = json.loads((out / "fat_summary.json").read_text())
    assert meta["liver"]["flags"] == ["liver_not_found"] and "fat.mat" in meta["liver"]["error"]
    assert (out / "fat_ff_percent.npy").is_file()
