"""Settings of one engine (model, context, offload) and of one generation (sampling)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SettingsError

__all__ = [
    "DEFAULT_CHECKPOINT_BYTES",
    "DEFAULT_CONTEXT",
    "DEFAULT_N_GPU_LAYERS",
    "DEFAULT_N_UBATCH",
    "DEFAULT_SLOTS",
    "KV_TYPES",
    "MAX_N_CTX",
    "MAX_SLOTS",
    "MIN_CONTEXT",
    "MIN_N_CTX",
    "EngineSettings",
    "Grammar",
    "SamplingParams",
    "engine_settings",
]

# ggml type ids for the KV cache types llama.cpp supports with flash attention.
KV_TYPES: dict[str, int] = {"f16": 1, "q8_0": 8, "q4_0": 2}
MAX_SLOTS = 256  # llama_max_parallel_sequences() in llama.cpp
MIN_N_CTX = 256
# 16 Mi KV cells: far beyond any real deployment (gpt-oss-120b would need 1.1 TiB of f16 KV for it).
MAX_N_CTX = 1 << 24
# What a served model gets unless the GPTOSS_* variables or its registry row say otherwise.
DEFAULT_CONTEXT = 8192  # tokens one conversation may use
MIN_CONTEXT = 512
DEFAULT_SLOTS = 4
DEFAULT_N_GPU_LAYERS = -1  # all layers on the GPU
DEFAULT_KV_TYPE = "f16"
DEFAULT_N_UBATCH = 512
MIN_N_BATCH = 2048  # one decode step takes up to this many tokens; n_ubatch above it raises it
# Host memory for the sliding-window checkpoints of cached conversations: one holds 129 cells of the window
# layers (gpt-oss-20b: 3 MiB in f16, gpt-oss-120b: 4.5 MiB), so this holds about 80 conversations of 20b.
DEFAULT_CHECKPOINT_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Describe how one worker process loads a model and shares its context between slots.

    ``n_ctx`` is the total number of KV cells; with a unified KV cache every slot draws from the same
    pool, so one long conversation may use more than ``n_ctx / n_slots`` while others are short.

    With ``auto_slots`` the engine sizes the slots itself once the model has loaded: as many as the memory
    left then holds, each with ``n_ctx / n_slots`` KV cells (``engine_settings`` passes one slot of the
    conversation's context). `Engine.settings` then holds the slots it chose.

    ``names`` says how whoever configured these settings calls them (field -> their name), so that every
    error names what they set: ``{"n_slots": "GPTOSS_SLOTS"}`` from the environment, ``{"n_slots":
    "slots"}`` from the admin's model form. A field missing from it is called by its own name.
    """

    model_path: Path
    n_ctx: int
    n_slots: int
    n_gpu_layers: int = DEFAULT_N_GPU_LAYERS
    n_cpu_moe: int = 0
    cpu_moe: bool = False
    kv_type: str = DEFAULT_KV_TYPE
    n_batch: int = MIN_N_BATCH
    n_ubatch: int = DEFAULT_N_UBATCH
    flash_attn: bool = True
    n_threads: int | None = None
    prefill_chunk: int = 512
    # Sample all sequences of a step together (sampling.py); False samples each with llama.cpp's own chain, as
    # grammar-constrained sequences always are (the bench and the tests compare the two).
    batched_sampling: bool = True
    # Bytes of host memory for the checkpoints of idle caches' sliding-window cells (0 keeps none); the least
    # recently used conversation's checkpoint goes first.
    checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES
    # Decode the opening the last reply began with (harmony's header) with each prompt's end, so that the
    # tokens of it the model samples come a step early each; False decodes every token in its own step.
    draft_opening: bool = True
    auto_slots: bool = False
    names: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def called(self, name: str) -> str:
        """Return what the person who configured these settings calls the field *name*."""
        return self.names.get(name, name)

    def stated(self, name: str, value: object = None) -> str:
        """Return ``setting=value`` for the field *name* (its own value unless *value* is given)."""
        called = self.called(name)
        shown = getattr(self, name) if value is None else value
        if isinstance(shown, bool) and name in self.names:
            shown = str(shown).lower()  # as in an environment file: GPTOSS_CPU_MOE=true
        # A setting made of several (n_ctx from "context × slots") reads "context × slots = 8192".
        return f"{called}={shown}" if called.isidentifier() else f"{called} = {shown}"

    def __post_init__(self) -> None:
        """Coerce the path and validate, so a bad configuration fails before the model loads."""
        object.__setattr__(self, "model_path", Path(self.model_path))
        self.validate()

    def validate(self) -> None:
        """Raise `SettingsError` naming the setting to change when the combination cannot work."""
        say, call = self.stated, self.called
        if not 1 <= self.n_slots <= MAX_SLOTS:
            raise SettingsError(f"{say('n_slots')} is out of range: use 1 to {MAX_SLOTS} parallel slots")
        if self.n_ctx < MIN_N_CTX:
            raise SettingsError(f"{say('n_ctx')} is too small: use at least {MIN_N_CTX} KV cells")
        if self.n_ctx > MAX_N_CTX:
            raise SettingsError(
                f"{say('n_ctx')} KV cells is absurdly large: the limit is {MAX_N_CTX}; lower {call('n_ctx')}"
            )
        if self.n_ctx < self.n_slots:
            raise SettingsError(f"{say('n_ctx')} is smaller than {say('n_slots')}: raise {call('n_ctx')}")
        if self.kv_type not in KV_TYPES:
            raise SettingsError(f"{say('kv_type')} is unknown: use one of {', '.join(KV_TYPES)}")
        if self.kv_type != "f16" and not self.flash_attn:
            raise SettingsError(
                f"{say('kv_type')} needs {say('flash_attn', True)} (llama.cpp quantizes V only then)"
            )
        if self.n_gpu_layers < -1:
            raise SettingsError(f"{say('n_gpu_layers')} is invalid: use -1 (all) or a count >= 0")
        if self.n_cpu_moe < 0:
            raise SettingsError(f"{say('n_cpu_moe')} is invalid: use 0 (off) or a layer count")
        if self.cpu_moe and self.n_cpu_moe:
            raise SettingsError(
                f"{call('cpu_moe')} and {call('n_cpu_moe')} are both set: "
                f"{call('cpu_moe')} already puts every expert on CPU"
            )
        if self.n_batch < 1 or self.n_ubatch < 1:
            raise SettingsError(f"{call('n_batch')} and {call('n_ubatch')} must be positive")
        if self.n_ubatch > self.n_batch:
            raise SettingsError(f"{say('n_ubatch')} exceeds {say('n_batch')}: lower {call('n_ubatch')}")
        if self.n_batch < self.n_slots:
            raise SettingsError(
                f"{say('n_batch')} is smaller than {say('n_slots')}: one step must fit a token per slot"
            )
        if not 1 <= self.prefill_chunk <= self.n_batch:
            raise SettingsError(f"{say('prefill_chunk')} must be between 1 and {say('n_batch')}")
        if self.n_threads is not None and self.n_threads < 1:
            raise SettingsError(f"{say('n_threads')} is invalid: use None (automatic) or >= 1")
        if self.checkpoint_bytes < 0:
            raise SettingsError(f"{say('checkpoint_bytes')} is invalid: use 0 (none) or a number of bytes")

    @property
    def offloads_experts(self) -> bool:
        """Return whether some expert tensors are pinned to CPU memory."""
        return self.cpu_moe or self.n_cpu_moe > 0


def engine_settings(
    *,
    model_path: Path,
    context: int = DEFAULT_CONTEXT,
    slots: int | None = DEFAULT_SLOTS,
    n_gpu_layers: int = DEFAULT_N_GPU_LAYERS,
    n_cpu_moe: int = 0,
    cpu_moe: bool = False,
    kv_type: str = DEFAULT_KV_TYPE,
    n_ubatch: int = DEFAULT_N_UBATCH,
    checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES,
    names: Mapping[str, str],
) -> EngineSettings:
    """Return the engine settings that serve *slots* conversations of *context* tokens each.

    *slots* None sizes them from the memory left once the model has loaded (``GPTOSS_SLOTS=auto``).

    The one builder for the GPTOSS_* variables and for a model registry row. *names* maps these
    arguments to what whoever set them calls them (``{"slots": "GPTOSS_SLOTS"}``, ``{"slots": "slots"}``)
    so that a `SettingsError` names what to change; the KV cache's size reads as "context × slots".
    """
    called = {name: names.get(name, name) for name in ("context", "slots")}
    return EngineSettings(
        model_path=model_path,
        n_ctx=context * (slots or 1),
        n_slots=slots or 1,
        auto_slots=slots is None,
        n_gpu_layers=n_gpu_layers,
        n_cpu_moe=n_cpu_moe,
        cpu_moe=cpu_moe,
        kv_type=kv_type,
        n_ubatch=n_ubatch,
        n_batch=max(MIN_N_BATCH, n_ubatch),
        checkpoint_bytes=checkpoint_bytes,
        names={
            **{name: value for name, value in names.items() if name not in called},
            "n_ctx": f"{called['context']} × {called['slots']}",
            "n_slots": called["slots"],
        },
    )


@dataclass(frozen=True, slots=True)
class Grammar:
    """A GBNF grammar that constrains a generation once its text matches one of *triggers*.

    llama.cpp's lazy grammar sampler lets every token through until the text generated so far matches a
    trigger (a regular expression over the whole text, special tokens written as their names); from the
    start of the trigger's first capture group on, the text must follow the rule *root*. So the grammar
    starts with what the group captures, and once it is complete only end-of-generation tokens remain.
    """

    gbnf: str
    root: str = "root"
    triggers: tuple[str, ...] = ()
    banned_tokens: tuple[int, ...] = ()
    """Tokens never sampled in a generation under this grammar: end-of-generation tokens the grammar
    would otherwise allow at its end, though the format has another (gpt-oss's ``<|endoftext|>``)."""

    def __post_init__(self) -> None:
        """Reject a grammar that could never apply."""
        if not self.gbnf.strip():
            raise SettingsError("grammar is empty: give GBNF rules, or no grammar")
        if not self.root:
            raise SettingsError("grammar root is empty: name the rule the text must follow")


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling of one generation; the defaults are gpt-oss's recommended settings.

    *grammar*, when given, restricts the tokens sampled to those it allows (see `Grammar`).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.01
    seed: int | None = None
    grammar: Grammar | None = None

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
