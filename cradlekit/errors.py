"""Exception types raised by cradlekit.

Every error a user can trigger with bad input derives from :class:`CradlekitError`
and from the builtin exception a Python user would expect (``ValueError``,
``KeyError``-like lookups are reported as ``ValueError`` so the message prints
cleanly), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CradlekitError",
    "InvalidCountsError",
    "MissingKeyError",
    "UnknownControlError",
    "EmptyPerturbationError",
    "ChecksumError",
    "NonFiniteLossError",
    "DatasetNotAvailableError",
    "ManifestError",
    "UnknownPerturbationError",
    "GeneMismatchError",
    "CheckpointError",
    "CheckpointMismatchError",
    "DamagedFileError",
    "FolderInUseError",
    "InvalidLabelError",
    "FileWriteError",
]


class CradlekitError(Exception):
    """Base class of all cradlekit errors."""


class InvalidCountsError(CradlekitError, ValueError):
    """The count matrix is not raw, finite, non-negative integer UMI counts."""


class MissingKeyError(CradlekitError, ValueError):
    """A column of ``obs``/``var``, a layer or an ``uns`` entry that is needed is absent."""


class UnknownControlError(CradlekitError, ValueError):
    """The control label does not occur in the perturbation column."""


class EmptyPerturbationError(CradlekitError, ValueError):
    """A perturbation (or a perturbation within a split) has no cells."""


class ChecksumError(CradlekitError, OSError):
    """A file does not match the checksum recorded for it."""


class NonFiniteLossError(CradlekitError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class DatasetNotAvailableError(CradlekitError, FileNotFoundError):
    """No verified local copy of a dataset exists and the file cannot be downloaded."""


class ManifestError(CradlekitError, ValueError):
    """The dataset manifest (or one of its entries) is malformed."""


class UnknownPerturbationError(EmptyPerturbationError):
    """A requested perturbation has a target (or condition) the model was never trained on."""


class GeneMismatchError(MissingKeyError):
    """An AnnData's genes (names or order) differ from those a model was trained on."""


class CheckpointError(CradlekitError, OSError):
    """A checkpoint or saved-model file cannot be read safely (damaged, truncated, or holding Python objects)."""


class CheckpointMismatchError(CradlekitError, ValueError):
    """A checkpoint was written by a different run (model, settings, genes or data) than the one resuming it."""


class DamagedFileError(CradlekitError, OSError):
    """A file exists but cannot be read as what it should be (damaged, truncated, or another format).

    The message names the file and what to do; an ``except OSError`` clause still catches it.
    """


class FolderInUseError(CradlekitError, OSError):
    """Another live process is writing into the same folder (a checkpoint folder, a grid's output folder)."""


class InvalidLabelError(MissingKeyError):
    """A perturbation label is malformed (an empty member, as in ``'+'``, ``'A+'`` or ``'A++B'``)."""


class FileWriteError(CradlekitError, OSError):
    """A file could not be written (disk full, file-size or quota limit); the message names the file.

    Keeps the ``errno`` of the underlying error (e.g. 28, no space left on device).
    """
