"""The ``xrdmtl`` command line (typer): it parses arguments and prints; the work is in the layers below."""

from .app import app

__all__ = ["app"]
