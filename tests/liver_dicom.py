"""Tiny single-slice liver DICOMs (pydicom) and zips, shared by the liver tests (fixture ``liver_dicom``)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

__all__ = ["dicom", "write_zip", "generate_uid"]


def dicom(*, desc, series_number, series_uid, instance, echo_ms, magnitude, pixels) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.1"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = desc
    ds.InstanceNumber = instance
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M" if magnitude else "P", "ND"]
    ds.ImagePositionPatient = [-100.0, -80.0, 50.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [2.5, 2.5]
    ds.SliceThickness = 6.0
    ds.EchoTime = float(echo_ms)
    ds.RepetitionTime = 27.0
    ds.MagneticFieldStrength = 1.5
    ds.Manufacturer = "SIEMENS"
    ds.Modality = "MR"
    ds.PatientID = "pseudo"
    ds.AcquisitionDate, ds.AcquisitionTime = "20190603", "101010"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if not magnitude:
        ds.RescaleSlope, ds.RescaleIntercept = 2, -4096
    ds.PixelData = np.clip(pixels, 0, 4095).astype("<u2").tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def write_zip(path: Path, images: list[bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i, data in enumerate(images):
            zf.writestr(f"{i + 1:05d}.dcm", data)
    return path
