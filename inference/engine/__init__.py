"""The inference engine: continuous batching of gpt-oss generations over llama.cpp (no Django).

The engine itself (and llama.cpp with it) loads on first use of `Engine` & co., so that the plain settings
and errors (`inference.engine.settings`) can be read by a web process, which never loads llama.cpp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import EngineError, EngineStoppedError, ModelLoadError, SettingsError
from .settings import EngineSettings, SamplingParams

if TYPE_CHECKING:
    from .engine import Engine, Generation, GenerationStats, StopReason

__all__ = [
    "Engine",
    "EngineError",
    "EngineSettings",
    "EngineStoppedError",
    "Generation",
    "GenerationStats",
    "ModelLoadError",
    "SamplingParams",
    "SettingsError",
    "StopReason",
]

_FROM_ENGINE = {"Engine", "Generation", "GenerationStats", "StopReason"}


def __getattr__(name: str) -> object:
    if name in _FROM_ENGINE:
        return getattr(importlib.import_module(".engine", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
