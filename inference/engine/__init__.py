"""The inference engine: continuous batching of gpt-oss generations over llama.cpp (no Django)."""

from __future__ import annotations

from .engine import Engine, Generation, GenerationStats, StopReason
from .errors import EngineError, EngineStoppedError, ModelLoadError, SettingsError
from .settings import EngineSettings, SamplingParams

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
