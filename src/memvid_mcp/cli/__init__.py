"""The human command line: thin over the manager (or the service)."""

from .main import main

__all__ = ["main"]
