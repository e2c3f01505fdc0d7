"""Settings of one engine (model, context, offload) and of one generation (sampling)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import SettingsError

__all__ = ["KV_TYPES", "MAX_N_CTX", "MAX_SLOTS", "MIN_N_CTX", "EngineSettings", "SamplingParams"]

# ggml type ids for the KV cache types llama.cpp supports with flash attention.
KV_TYPES: dict[str, int] = {"f16": 1, "q8_0": 8, "q4_0": 2}
MAX_SLOTS = 256  # llama_max_parallel_sequences() in llama.cpp
MIN_N_CTX = 256
# 16 Mi KV cells: far beyond any real deployment (gpt-oss-120b would need 1.1 TiB of f16 KV for it).
MAX_N_CTX = 1 << 24


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Describe how one worker process loads a model and shares its context between slots.

    ``n_ctx`` is the total number of KV cells; with a unified KV cache every slot draws from the same
    pool, so one long conversation may use more than ``n_ctx / n_slots`` while others are short.
    """

    model_path: Path
    n_ctx: int
    n_slots: int
    n_gpu_layers: int = -1
    n_cpu_moe: int = 0
    cpu_moe: bool = False
    kv_type: str = "f16"
    n_batch: int = 2048
    n_ubatch: int = 512
    flash_attn: bool = True
    n_threads: int | None = None
    prefill_chunk: int = 512

    def __post_init__(self) -> None:
        """Coerce the path and validate, so a bad configuration fails before the model loads."""
        object.__setattr__(self, "model_path", Path(self.model_path))
        self.validate()

    def validate(self) -> None:
        """Raise `SettingsError` naming the setting to change when the combination cannot work."""
        if not 1 <= self.n_slots <= MAX_SLOTS:
            raise SettingsError(
                f"n_slots={self.n_slots} is out of range: use 1 to {MAX_SLOTS} parallel slots"
            )
        if self.n_ctx < MIN_N_CTX:
            raise SettingsError(f"n_ctx={self.n_ctx} is too small: use at least {MIN_N_CTX} KV cells")
        if self.n_ctx > MAX_N_CTX:
            raise SettingsError(
                f"n_ctx={self.n_ctx} is absurdly large: the limit is {MAX_N_CTX} KV cells "
                "(size it as n_slots x the longest conversation you want to serve)"
            )
        if self.n_ctx < self.n_slots:
            raise SettingsError(f"n_ctx={self.n_ctx} is smaller than n_slots={self.n_slots}: raise n_ctx")
        if self.kv_type not in KV_TYPES:
            raise SettingsError(f"kv_type={self.kv_type!r} is unknown: use one of {', '.join(KV_TYPES)}")
        if self.kv_type != "f16" and not self.flash_attn:
            raise SettingsError(
                f"kv_type={self.kv_type!r} needs flash_attn=True (llama.cpp quantizes V only then)"
            )
        if self.n_gpu_layers < -1:
            raise SettingsError(f"n_gpu_layers={self.n_gpu_layers} is invalid: use -1 (all) or a count >= 0")
        if self.n_cpu_moe < 0:
            raise SettingsError(f"n_cpu_moe={self.n_cpu_moe} is invalid: use 0 (off) or a layer count")
        if self.cpu_moe and self.n_cpu_moe:
            raise SettingsError(
                "cpu_moe and n_cpu_moe are both set: cpu_moe already puts every expert on CPU"
            )
        if self.n_batch < 1 or self.n_ubatch < 1:
            raise SettingsError("n_batch and n_ubatch must be positive")
        if self.n_ubatch > self.n_batch:
            raise SettingsError(f"n_ubatch={self.n_ubatch} exceeds n_batch={self.n_batch}: lower n_ubatch")
        if self.n_batch < self.n_slots:
            raise SettingsError(
                f"n_batch={self.n_batch} is smaller than n_slots={self.n_slots}: "
                "one step must fit a token per slot"
            )
        if not 1 <= self.prefill_chunk <= self.n_batch:
            raise SettingsError(
                f"prefill_chunk={self.prefill_chunk} must be between 1 and n_batch={self.n_batch}"
            )
        if self.n_threads is not None and self.n_threads < 1:
            raise SettingsError(f"n_threads={self.n_threads} is invalid: use None (automatic) or >= 1")

    @property
    def offloads_experts(self) -> bool:
        """Return whether some expert tensors are pinned to CPU memory."""
        return self.cpu_moe or self.n_cpu_moe > 0


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling of one generation; the defaults are gpt-oss's recommended settings."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.01
    seed: int | None = None

    def __post_init__(self) -> None:
        """Reject values llama.cpp's samplers would silently misinterpret."""
        if self.temperature < 0:
            raise SettingsError(f"temperature={self.temperature} must be >= 0 (0 means greedy)")
        if not 0 < self.top_p <= 1:
            raise SettingsError(f"top_p={self.top_p} must be in (0, 1]")
        if self.top_k < 0:
            raise SettingsError(f"top_k={self.top_k} must be >= 0 (0 disables it)")
        if not 0 <= self.min_p < 1:
            raise SettingsError(f"min_p={self.min_p} must be in [0, 1)")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise SettingsError(f"seed={self.seed} must fit in 32 bits")

    @property
    def greedy(self) -> bool:
        """Return whether this samples the most likely token every time."""
        return self.temperature == 0
