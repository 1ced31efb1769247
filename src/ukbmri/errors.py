"""Domain exceptions: every error a user can trigger with bad input lives here.

Each exception names *where* (the file, and the zip member when there is one)
and *what* (expected versus found), in the style of pydicom's messages::

    >>> raise MissingTagError("missing DICOM tag EchoTime (0018,0081)",
    ...                       path="1234567_20203_2_0.zip", member="1.3.12.2.dcm")
    ukbmri.errors.MissingTagError: 1234567_20203_2_0.zip[1.3.12.2.dcm]: missing DICOM tag EchoTime (0018,0081)

The CLI prints ``str(error)`` as one line and exits non-zero; the engine
records ``type(error).__name__`` and ``str(error)`` in the failures ledger.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "UkbmriError",
    "InputError",
    "NotAZipError",
    "TruncatedZipError",
    "UnsafeMemberError",
    "MemberTooLargeError",
    "NoDicomError",
    "NotDicomError",
    "MissingTagError",
    "UnknownProtocolError",
    "FieldMismatchError",
    "SeriesError",
    "PixelDataError",
    "StationError",
    "FusionError",
    "LiverInputError",
    "TensorError",
    "ModuleError",
    "UnsafeModelFileError",
    "TargetsError",
    "FitInputError",
    "CacheError",
    "OutputExistsError",
    "WorkerDiedError",
    "OutputError",
    "RunLockedError",
    "GitLfsPointerError",
    "QualityCheckError",
    "LiverNotFoundError",
]


class UkbmriError(Exception):
    """Base class of every ukbmri domain error.

    Parameters
    ----------
    message:
        What went wrong, in plain words.
    path:
        The file (zip, module folder, table, ...) that was being read.
    member:
        The member inside ``path`` (a zip member name, an hd5 dataset, a file
        inside a module folder), if any. Never used as a filesystem path.
    expected, found:
        Optional short descriptions appended as ``(expected X, found Y)``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        member: str | None = None,
        expected: object = None,
        found: object = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.member = member
        self.expected = expected
        self.found = found
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.member is not None:
                where += f"[{self.member}]"
        elif self.member is not None:
            where = f"[{self.member}]"
        text = f"{where}: {self.message}" if where else self.message
        if self.expected is not None or self.found is not None:
            parts = []
            if self.expected is not None:
                parts.append(f"expected {self.expected}")
            if self.found is not None:
                parts.append(f"found {self.found}")
            text += f" ({', '.join(parts)})"
        return text

    def __reduce__(self):  # keep the keyword arguments when pickled (Dask, multiprocessing)
        return (
            _rebuild,
            (type(self), self.message, self.path, self.member, self.expected, self.found),
        )


def _rebuild(cls, message, path, member, expected, found):
    obj = cls.__new__(cls)
    UkbmriError.__init__(obj, message, path=path, member=member, expected=expected, found=found)
    return obj


class InputError(UkbmriError):
    """A file given to ukbmri cannot be used as it is."""


# -- zips -------------------------------------------------------------------
class NotAZipError(InputError):
    """The file is not a zip archive at all."""


class TruncatedZipError(InputError):
    """The zip is cut short or its central directory / a member is corrupt."""


class UnsafeMemberError(InputError):
    """A member name is absolute or contains ``..``: refused, never used as a path."""


class MemberTooLargeError(InputError):
    """A member (or the whole archive) would decompress beyond the configured cap."""


class NoDicomError(InputError):
    """The zip holds no DICOM files."""


# -- DICOM ------------------------------------------------------------------
class NotDicomError(InputError):
    """A member that should be DICOM is not."""


class MissingTagError(InputError):
    """A DICOM file lacks a tag the reader needs (message names the tag)."""


class UnknownProtocolError(InputError):
    """The series in a zip match none of the known fields (20201, 20203, 20254)."""


class FieldMismatchError(InputError):
    """The field detected from the headers is not the one a stage needs."""


class SeriesError(InputError):
    """A series is inconsistent (mixed shapes, missing positions, ...)."""


class PixelDataError(InputError):
    """A DICOM image's PixelData cannot be decoded (truncated, unsupported encoding)."""


# -- preprocessing ------------------------------------------------------------
class StationError(InputError):
    """Field 20201: stations missing or unusable."""


class FusionError(UkbmriError):
    """Field 20201: stations cannot be fused (e.g. W and F at different positions)."""


class LiverInputError(InputError):
    """Field 20203 / 20254: wrong echo count, phase images only, missing dynamics, ..."""


class TensorError(UkbmriError):
    """A tensor cannot be built or normalised (constant image, NaN/inf, bad shape)."""


# -- models / modules ---------------------------------------------------------
class ModuleError(InputError):
    """An inference module folder is missing, incomplete or inconsistent."""


class UnsafeModelFileError(ModuleError):
    """A weights file needs arbitrary pickled code to load: refused."""


class TargetsError(InputError):
    """A target / label table is unusable (no id column, no overlap with images, ...)."""


# -- physics ------------------------------------------------------------------
class FitInputError(InputError):
    """Fat-water fitting input is unusable (too few echoes, TE mismatch, non-finite data)."""


# -- engine -------------------------------------------------------------------
class CacheError(UkbmriError):
    """A cache entry is unreadable or inconsistent with its input."""


class OutputExistsError(UkbmriError):
    """An output folder (e.g. a module being trained) already exists and overwriting was not asked for."""


class WorkerDiedError(UkbmriError):
    """A worker process died (killed for memory, a native crash) while a participant was in flight."""


class OutputError(UkbmriError):
    """Results cannot be written to the output folder (permission denied, read-only, disk full)."""


class RunLockedError(UkbmriError):
    """Another run is using the output folder (its lock names the process, host and start time)."""


# -- models / modules (continued) ----------------------------------------------
class GitLfsPointerError(ModuleError):
    """A weights file is a Git LFS pointer (a small text file), not the model: fetch the real file."""


# -- quality checks -------------------------------------------------------------
class QualityCheckError(InputError):
    """An input failed a fatal quality check (blank, constant, noise-like, ...): no network numbers.

    The message starts with the QC flag name (``docs/qc_flags.md``), e.g.
    ``body_input_blank: water + fat is 0 in all ... voxels``.
    """


# -- liver ------------------------------------------------------------------------
class LiverNotFoundError(LiverInputError):
    """Field 20203 / 20254 or any multi-echo slice: no liver (or no usable liver ROI) was found."""
