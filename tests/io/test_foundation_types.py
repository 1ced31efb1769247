import pickle

import numpy as np
import pytest

from ukbmri.errors import MissingTagError, UkbmriError
from ukbmri.io.atomic import save_npy, write_text
from ukbmri.io.nifti import load_volume, save_volume
from ukbmri.types import ParticipantKey, Volume


def test_participant_key_from_name():
    k = ParticipantKey.from_path("/data/1234567_20201_2_0.zip")
    assert k == ParticipantKey(1234567, 20201, 2, 0)
    assert k.stem == "1234567_20201_2_0"
    assert ParticipantKey.from_path("notes.zip") is None


def test_error_message_names_file_member_expected_found():
    e = MissingTagError("missing DICOM tag EchoTime", path="a.zip", member="1.dcm", expected="float", found="absent")
    assert str(e) == "a.zip[1.dcm]: missing DICOM tag EchoTime (expected float, found absent)"
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is MissingTagError and str(e2) == str(e) and e2.member == "1.dcm"
    assert isinstance(e2, UkbmriError)


def test_atomic_writes_leave_no_temp_on_failure(tmp_path):
    target = tmp_path / "x.npy"
    save_npy(target, np.arange(3))
    assert np.load(target).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        save_npy(target, np.array([object()], dtype=object))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    assert np.load(target).tolist() == [0, 1, 2]
    write_text(tmp_path / "a" / "b.txt", "hi")
    assert (tmp_path / "a" / "b.txt").read_text() == "hi"


def test_nifti_roundtrip_keeps_lps_geometry(tmp_path):
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    vol = Volume(arr, spacing=(2.0, 3.0, 4.0), origin=(-10.0, 20.0, 30.0))
    save_volume(vol, tmp_path / "v.nii.gz")
    back = load_volume(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine_lps(), vol.affine_lps())
    # RAS affine flips x and y of the LPS one
    np.testing.assert_allclose(vol.affine_ras()[:2, 3], [10.0, -20.0])
