"""Errors raised by Pixels.

Every error derives from :class:`PixelsError` and names what it is about (a path,
a DICOM tag written ``(gggg,eeee)``, a field) so a message in a log or a table
row is actionable on its own.
"""

from __future__ import annotations


class PixelsError(Exception):
    """Root of all errors raised by Pixels.

    Parameters
    ----------
    message : str
        What went wrong.
    path : str, optional
        The file, URL or archive member the error is about; prefixed to the message.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)


class SourceError(PixelsError):
    """A source (folder, URL, archive) could not be listed or a file could not be opened."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The folder, URL or archive given as a source does not exist."""


class UnsafeArchiveMemberError(SourceError):
    """A zip member was refused: path traversal, absolute name, encryption, or bomb limits."""


class DicomReadError(PixelsError):
    """A DICOM file could not be read (truncated, corrupt, not DICOM)."""


class TableError(PixelsError):
    """The Delta table could not be created, read or written."""


class QueryError(PixelsError, ValueError):
    """A SQL query was rejected by the engine; the message is the engine's own."""


class DecodeError(PixelsError):
    """Pixel data could not be decoded: no decoder installed for the transfer syntax
    (the message names the packages to install), or the codec failed on the frame."""


class SeriesError(PixelsError):
    """A series cannot be made into one volume (mixed sizes, gaps, inconsistent orientation,
    missing geometry, a slice that cannot be read); the message names the series and the file."""


class ModelError(PixelsError):
    """A segmentation model is unknown, unavailable (what to install is named) or refused its
    input (wrong modality, too few slices)."""


class MissingDecoderError(DecodeError):
    """No installed decoder handles the transfer syntax (the message says what to install)."""


class NrrdError(PixelsError, ValueError):
    """An NRRD that cannot be read as a 3-D label volume (the message names the field)."""


class TranscodeError(PixelsError):
    """A file cannot be sent in the transfer syntax asked for (video, too large, no file meta)."""


class DeidError(PixelsError):
    """A file cannot be de-identified safely (unreadable, truncated, an element that cannot be
    cleaned, pixel data that cannot be blacked out), or the key file is unusable; the message
    names the file and the tag."""
