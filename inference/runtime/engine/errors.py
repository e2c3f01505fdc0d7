"""Errors raised by the inference engine, each with a message an operator can act on."""

from __future__ import annotations

__all__ = ["EngineError", "EngineStoppedError", "GrammarError", "ModelLoadError", "SettingsError"]


class EngineError(Exception):
    """Base class for every error the engine raises on purpose."""


class SettingsError(EngineError, ValueError):
    """Raise when engine or sampling settings are invalid before anything is loaded."""


class GrammarError(EngineError, ValueError):
    """Raise when a generation's grammar cannot be built: a schema it cannot express, bad GBNF."""


class ModelLoadError(EngineError):
    """Raise when the model or its context cannot be loaded; the message says what to change."""


class EngineStoppedError(EngineError):
    """Raise when work is submitted to an engine that is not running."""
