"""Composition root: settings, CLI, process wiring, web API, audit and metrics."""

__version__ = "0.1.0"
