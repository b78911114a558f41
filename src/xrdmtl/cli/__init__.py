"""The ``xrdmtl`` command line (typer): it parses arguments and prints; the work is in the layers below."""

from . import adapt as _adapt  # noqa: F401  (registers finetune and crossval)
from . import beamline as _beamline  # noqa: F401  (registers watch, timeline and export)
from . import experiment as _experiment  # noqa: F401  (registers experiment)
from .app import app

__all__ = ["app"]
