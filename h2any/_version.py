"""The package version, in one place (the User-Agent, the CLI and ``h2any.__version__``)."""

from __future__ import annotations

__all__ = ("__version__",)

__version__ = "0.1.0"
