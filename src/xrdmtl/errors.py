"""The project's error types: each message is one line naming the input and the problem."""

from __future__ import annotations

from pathlib import Path


class XrdmtlError(Exception):
    """Base class of every error xrdmtl raises on bad input; the CLI prints it as one line."""

    def __init__(self, message: str, source: str | Path | None = None) -> None:
        self.source = None if source is None else str(source)
        self.reason = " ".join(str(message).split())
        super().__init__(f"{self.source}: {self.reason}" if self.source else self.reason)


class PatternError(XrdmtlError):
    """A 1D pattern file that cannot be read or used (format, values, units, coverage)."""


class FrameError(XrdmtlError):
    """A 2D detector frame, stack, mask or geometry that cannot be read or used."""


class PhaseError(XrdmtlError):
    """An unknown phase name or an unreadable structure (CIF, JCPDS) file."""


class ModelError(XrdmtlError):
    """A missing, corrupt or incompatible model folder or file."""


class LabelsError(XrdmtlError):
    """A labels CSV that does not match the model or the files."""


class OutputError(XrdmtlError):
    """An output path that cannot be written, or whose writing would destroy an input or a folder."""


class ConfigError(XrdmtlError, ValueError):
    """A setting out of its range: a config field, an option, a constructor argument."""
