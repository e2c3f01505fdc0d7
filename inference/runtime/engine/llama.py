"""Thin ctypes helpers over llama-cpp-python's low-level API.

Everything here is called from the engine thread only (llama.cpp objects are not thread-safe), except
the log callback, which llama.cpp may call from any thread.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp import _ggml

from inference.runtime import gguf

from .errors import GrammarError, ModelLoadError
from .settings import KV_TYPES, MAX_SLOTS, EngineSettings, Grammar, SamplingParams

__all__ = [
    "GGUFInfo",
    "LlamaBatch",
    "TensorBuftOverrides",
    "capture_llama_log",
    "check_grammar",
    "device_memory",
    "expert_override_patterns",
    "grammar_sampler",
    "kv_memory",
    "make_sampler",
    "model_meta",
    "read_gguf_info",
    "restore_window",
    "save_window",
    "step_logits",
]

logger = logging.getLogger(__name__)

GPT_OSS_ARCH = gguf.GPT_OSS_ARCH

# --------------------------------------------------------------------------------------------------
# Log capture
# --------------------------------------------------------------------------------------------------

# enum ggml_log_level in the ggml.h this package ships (llama-cpp-python's own _logger maps an older order).
_GGML_LOG_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_GGML_LOG_CONT = 5


class _LogRouter:
    """Route llama.cpp's log lines to Python logging and to any active captures.

    llama.cpp has one global log callback per process, so one router serves every engine. Lines arrive
    in pieces (progress dots, continuation records); they are joined until a newline.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._captures: list[list[str]] = []
        self._partial = ""
        self._level = logging.DEBUG
        # Keep the ctypes callback referenced for the life of the process: llama.cpp holds a raw pointer.
        self._callback = llama_cpp.llama_log_callback(self._on_log)
        self._installed = False

    def install(self) -> None:
        """Install the callback once; later calls are no-ops."""
        with self._lock:
            if not self._installed:
                llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
                self._installed = True

    def _on_log(self, level: int, text: bytes | None, _user_data: ctypes.c_void_p) -> None:
        if not text:
            return
        chunk = text.decode("utf-8", errors="replace")
        with self._lock:
            if level != _GGML_LOG_CONT:
                self._level = _GGML_LOG_LEVELS.get(level, logging.DEBUG)
            self._partial += chunk
            if "\n" not in self._partial:
                return
            *lines, self._partial = self._partial.split("\n")
            py_level = self._level
            for capture in self._captures:
                capture.extend(lines)
        # llama.cpp's INFO lines are chatty (hundreds per load): keep them at DEBUG, pass warnings on.
        log_level = py_level if py_level >= logging.WARNING else logging.DEBUG
        for line in lines:
            if line.strip():
                logger.log(log_level, "llama.cpp: %s", line)

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Collect every log line emitted while the block runs."""
        self.install()
        lines: list[str] = []
        with self._lock:
            self._captures.append(lines)
        try:
            yield lines
        finally:
            with self._lock:
                if self._partial:
                    lines.append(self._partial)
                self._captures.remove(lines)


_LOG_ROUTER = _LogRouter()


def capture_llama_log() -> AbstractContextManager[list[str]]:
    """Return a context manager that yields the list of llama.cpp log lines written inside it."""
    return _LOG_ROUTER.capture()


_backend_lock = threading.Lock()
_backend_ready = False


def backend_init() -> None:
    """Initialise llama.cpp's backends once per process."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            _LOG_ROUTER.install()
            llama_cpp.llama_backend_init()
            _backend_ready = True


# --------------------------------------------------------------------------------------------------
# GGUF header (read before llama.cpp sees the file, for actionable errors)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """The few header values the engine checks before loading."""

    architecture: str | None
    block_count: int | None


_BLOCK_COUNT_KEY = f"{GPT_OSS_ARCH}.block_count"


def read_gguf_info(path: Path) -> GGUFInfo:
    """Read the architecture and block count from a GGUF header without loading tensors.

    Stop as soon as both are known (or the architecture is not gpt-oss): they come first in every
    converter's output, long before the vocabulary, so this reads a few hundred bytes.
    """

    def done(found: Mapping[str, gguf.MetadataValue]) -> bool:
        architecture = found.get(gguf.ARCHITECTURE_KEY)
        return len(found) == 2 or (architecture is not None and architecture != GPT_OSS_ARCH)

    try:
        found = gguf.read_metadata(path, (gguf.ARCHITECTURE_KEY, _BLOCK_COUNT_KEY), done=done)
    except gguf.GGUFError as exc:
        raise ModelLoadError(str(exc)) from exc
    architecture = found.get(gguf.ARCHITECTURE_KEY)
    blocks = found.get(_BLOCK_COUNT_KEY)
    return GGUFInfo(
        architecture=architecture if isinstance(architecture, str) else None,
        block_count=blocks if isinstance(blocks, int) and not isinstance(blocks, bool) else None,
    )


def model_meta(model: llama_cpp.llama_model_p, key: str) -> str | None:
    """Return a GGUF metadata value of a loaded model as a string, or None when absent."""
    buf = ctypes.create_string_buffer(512)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    return buf.value.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------------
# CPU offload of experts
# --------------------------------------------------------------------------------------------------


class _BuftOverride(ctypes.Structure):
    """`struct llama_model_tensor_buft_override` (llama-cpp-python declares the field as void *)."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


_EXPERTS = r"ffn_(up|down|gate|gate_up)_(ch|)exps"


def expert_override_patterns(*, n_cpu_moe: int, cpu_moe: bool) -> list[str]:
    """Return llama.cpp's own `--n-cpu-moe` / `--cpu-moe` tensor patterns."""
    if cpu_moe:
        return [rf"\.{_EXPERTS}"]
    return [rf"blk\.{i}\.{_EXPERTS}" for i in range(n_cpu_moe)]


class TensorBuftOverrides:
    """A NULL-terminated `tensor_buft_overrides` array that keeps its strings alive until freed."""

    def __init__(self, patterns: list[str]) -> None:
        cpu_buft_fn = _ggml.libggml.ggml_backend_cpu_buffer_type
        cpu_buft_fn.restype = ctypes.c_void_p
        cpu_buft_fn.argtypes = []
        cpu_buft = cpu_buft_fn()
        if not cpu_buft:
            raise ModelLoadError(
                "ggml has no CPU buffer type: the llama-cpp-python build is broken, reinstall it"
            )
        self.patterns = [p.encode() for p in patterns]
        self.array = (_BuftOverride * (len(patterns) + 1))()
        for i, pattern in enumerate(self.patterns):
            self.array[i].pattern = pattern
            self.array[i].buft = cpu_buft
        self.array[len(patterns)].pattern = None
        self.array[len(patterns)].buft = None

    @property
    def address(self) -> int:
        """Return the array's address for `llama_model_params.tensor_buft_overrides`."""
        return ctypes.addressof(self.array)


# --------------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------------

GGML_BACKEND_DEVICE_TYPE_CPU = 0


@dataclass(frozen=True, slots=True)
class DeviceMemory:
    """Free and total memory of one ggml backend device."""

    name: str
    is_cpu: bool
    free: int
    total: int


def device_memory() -> list[DeviceMemory]:
    """List ggml's backend devices with their memory, to check a KV cache fits before allocating it."""
    lib = _ggml.libggml
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_memory.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        name = (lib.ggml_backend_dev_name(dev) or b"?").decode()
        is_cpu = lib.ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU
        devices.append(DeviceMemory(name=name, is_cpu=is_cpu, free=free.value, total=total.value))
    return devices


def available_ram() -> int:
    """Return the RAM the kernel can give a new allocation (MemAvailable), in bytes.

    ggml's CPU device reports the machine's total memory as free, so the RAM a KV cache may use is read here.
    """
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class KVMemory:
    """The memory a KV cache would live in: free GPU memory when layers run on a GPU, else RAM."""

    free: int
    on_gpu: bool

    @property
    def where(self) -> str:
        return "GPU memory" if self.on_gpu else "RAM"


def kv_memory(settings: EngineSettings) -> KVMemory | None:
    """Return the free memory of the devices that would hold the KV cache, None when ggml lists none."""
    devices = device_memory()
    gpus = [d for d in devices if not d.is_cpu]
    if gpus and settings.n_gpu_layers != 0:
        return KVMemory(free=sum(d.free for d in gpus), on_gpu=True)
    cpus = [d for d in devices if d.is_cpu]
    if not cpus:
        return None
    return KVMemory(free=min(sum(d.free for d in cpus), available_ram()), on_gpu=False)


# --------------------------------------------------------------------------------------------------
# Model and context parameters
# --------------------------------------------------------------------------------------------------


def model_params(
    settings: EngineSettings, overrides: TensorBuftOverrides | None
) -> llama_cpp.llama_model_params:
    """Build model parameters; expert overrides need use_mmap off so the CPU copy is a real buffer."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = settings.n_gpu_layers if settings.n_gpu_layers >= 0 else 2**31 - 1
    if overrides is not None:
        params.tensor_buft_overrides = overrides.address
        params.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE  # use_mmap=False
    return params


def default_threads() -> tuple[int, int]:
    """Return (generation, batch) thread counts the way llama-cpp-python's `Llama` picks them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2), max(1, cores)


def context_params(settings: EngineSettings) -> llama_cpp.llama_context_params:
    """Build context parameters for continuous batching over a unified KV cache.

    swa_full keeps the whole sliding-window history, which is what lets a partial `seq_rm` keep a
    conversation's prefix for its next turn. One sequence id beyond the slots (`scratch_seq`) serves to
    save sliding-window checkpoints; with a unified cache it costs no memory.
    """
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = settings.n_ctx
    params.n_batch = settings.n_batch
    params.n_ubatch = settings.n_ubatch
    params.n_seq_max = settings.n_slots + (scratch_seq(settings) is not None)
    if settings.n_threads is not None:
        params.n_threads = params.n_threads_batch = settings.n_threads
    else:
        params.n_threads, params.n_threads_batch = default_threads()
    params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if settings.flash_attn
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    params.type_k = params.type_v = KV_TYPES[settings.kv_type]
    params.swa_full = True
    params.kv_unified = True
    params.no_perf = True
    return params


def scratch_seq(settings: EngineSettings) -> int | None:
    """Return the sequence id kept free for saving checkpoints, None when every id is a slot."""
    return settings.n_slots if settings.n_slots < MAX_SLOTS else None


# --------------------------------------------------------------------------------------------------
# Sliding-window checkpoints
# --------------------------------------------------------------------------------------------------

_SWA_ONLY = llama_cpp.LLAMA_STATE_SEQ_FLAGS_SWA_ONLY


def save_window(
    ctx: llama_cpp.llama_context_p, seq: int, scratch: int, first: int, end: int
) -> tuple[ctypes.Array[ctypes.c_uint8], int] | None:
    """Return the sliding-window cells of *seq* from position *first* to *end* (excluded: a draft decoded with
    the prompt's end may follow it), as llama.cpp serializes them, and the first position they hold (later
    than *first* where llama.cpp has freed cells); None if it holds none.

    `llama_state_seq_get_data_ext` with `LLAMA_STATE_SEQ_FLAGS_SWA_ONLY` writes every window cell a sequence
    still has, and with `swa_full` that can be its whole history. So the cells wanted are first shared with
    the *scratch* sequence (`seq_cp` only tags the cells of a unified cache), that sequence is saved, and
    the tags are removed again.
    """
    mem = llama_cpp.llama_get_memory(ctx)
    llama_cpp.llama_memory_seq_cp(mem, seq, scratch, first, end)
    try:
        pos_min = llama_cpp.llama_memory_seq_pos_min(mem, scratch)
        if pos_min < 0:
            return None
        size = llama_cpp.llama_state_seq_get_size_ext(ctx, scratch, _SWA_ONLY)
        data = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data_ext(ctx, data, size, scratch, _SWA_ONLY) != size:
            return None
        return data, pos_min
    finally:
        llama_cpp.llama_memory_seq_rm(mem, scratch, -1, -1)


def restore_window(ctx: llama_cpp.llama_context_p, seq: int, data: ctypes.Array[ctypes.c_uint8]) -> bool:
    """Replace the sliding-window cells of *seq* with a `save_window` checkpoint; False when llama.cpp fails.

    The full-attention cells stay as they are. On failure the sequence's window cells may be gone: clear it.
    """
    size = len(data)
    return bool(llama_cpp.llama_state_seq_set_data_ext(ctx, data, size, seq, _SWA_ONLY) == size)


_KV_BYTES_PER_VALUE = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def kv_cache_bytes(model: llama_cpp.llama_model_p, settings: EngineSettings) -> int:
    """Estimate the KV cache size (K and V, every layer, full-size SWA) for the settings."""
    arch = model_meta(model, "general.architecture") or GPT_OSS_ARCH
    n_layer = llama_cpp.llama_model_n_layer(model)
    n_head_kv = llama_cpp.llama_model_n_head_kv(model)
    n_embd = llama_cpp.llama_model_n_embd(model)
    n_head = max(1, llama_cpp.llama_model_n_head(model))
    key_len = int(model_meta(model, f"{arch}.attention.key_length") or n_embd // n_head)
    value_len = int(model_meta(model, f"{arch}.attention.value_length") or key_len)
    per_cell = n_layer * n_head_kv * (key_len + value_len) * _KV_BYTES_PER_VALUE[settings.kv_type]
    return int(per_cell * settings.n_ctx)


# --------------------------------------------------------------------------------------------------
# Batch and samplers
# --------------------------------------------------------------------------------------------------


class LlamaBatch:
    """A `llama_batch` allocated once, refilled every step.

    Each token belongs to exactly one sequence, so only `seq_id[i][0]` is ever written.
    """

    def __init__(self, capacity: int, n_seq_max: int) -> None:
        self.capacity = capacity
        self.batch = llama_cpp.llama_batch_init(capacity, 0, n_seq_max)
        self.n_tokens = 0
        self._token = self.batch.token
        self._pos = self.batch.pos
        self._n_seq_id = self.batch.n_seq_id
        self._seq_id = self.batch.seq_id
        self._logits = self.batch.logits
        self._freed = False

    def clear(self) -> None:
        """Empty the batch for the next step."""
        self.n_tokens = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append one token and return its index in the batch."""
        i = self.n_tokens
        self._token[i] = token
        self._pos[i] = pos
        self._n_seq_id[i] = 1
        self._seq_id[i][0] = seq
        self._logits[i] = logits
        self.n_tokens = i + 1
        return i

    def add_sequence(self, tokens: list[int], start_pos: int, seq: int, logits_last: bool) -> int:
        """Append consecutive tokens of one sequence; return the index of the last one."""
        i = self.n_tokens
        token, pos, n_seq_id, seq_id, out = self._token, self._pos, self._n_seq_id, self._seq_id, self._logits
        for k, tok in enumerate(tokens):
            token[i] = tok
            pos[i] = start_pos + k
            n_seq_id[i] = 1
            seq_id[i][0] = seq
            out[i] = 0
            i += 1
        if logits_last:
            out[i - 1] = 1
        self.n_tokens = i
        return i - 1

    def decode(self, ctx: llama_cpp.llama_context_p) -> int:
        """Run `llama_decode` on the tokens added since the last clear."""
        self.batch.n_tokens = self.n_tokens
        return int(llama_cpp.llama_decode(ctx, self.batch))

    def free(self) -> None:
        """Free the C arrays (idempotent)."""
        if not self._freed:
            llama_cpp.llama_batch_free(self.batch)
            self._freed = True


def step_logits(
    ctx: llama_cpp.llama_context_p, indices: list[int], n_vocab: int
) -> tuple[npt.NDArray[np.float32], list[int]]:
    """Return the last decode's logits as one (outputs × vocabulary) array, read in place, and the row of
    each batch index in *indices* (where `llama_get_logits_ith` finds it, whatever order llama.cpp keeps).

    The array lives in llama.cpp's buffer: valid until the next decode, and never to be written.
    """
    base = llama_cpp.llama_get_logits(ctx)
    base_address = ctypes.cast(base, ctypes.c_void_p).value or 0
    row_bytes = ctypes.sizeof(ctypes.c_float) * n_vocab
    rows = []
    for index in indices:
        address = ctypes.cast(llama_cpp.llama_get_logits_ith(ctx, index), ctypes.c_void_p).value or 0
        rows.append((address - base_address) // row_bytes)
    block = np.ctypeslib.as_array(base, shape=(max(rows) + 1, n_vocab))
    return block, rows


LLAMA_DEFAULT_SEED = 0xFFFFFFFF


def make_sampler(sampling: SamplingParams, vocab: llama_cpp.llama_vocab_p) -> llama_cpp.llama_sampler_p:
    """Build one generation's sampler chain in llama.cpp's order: grammar, top-k, top-p, min-p, temp, dist.

    The grammar comes first, as in llama.cpp's common sampler, so the others see only the tokens it
    allows. Raise `GrammarError` when llama.cpp refuses the grammar (its log says where).
    """
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    grammar = sampling.grammar
    if grammar is not None:
        try:
            llama_cpp.llama_sampler_chain_add(chain, grammar_sampler(grammar, vocab))
        except GrammarError:
            llama_cpp.llama_sampler_free(chain)
            raise
        if grammar.banned_tokens:
            biases = (llama_cpp.llama_logit_bias * len(grammar.banned_tokens))(
                *(llama_cpp.llama_logit_bias(token, -math.inf) for token in grammar.banned_tokens)
            )
            n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
            bias = llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(biases), biases)
            llama_cpp.llama_sampler_chain_add(chain, bias)
    if sampling.greedy:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if sampling.top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(sampling.top_k))
    if sampling.top_p < 1.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
    if sampling.min_p > 0.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(sampling.temperature))
    seed = LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


def grammar_sampler(grammar: Grammar, vocab: llama_cpp.llama_vocab_p) -> llama_cpp.llama_sampler_p:
    """Return llama.cpp's grammar sampler for *grammar*: lazy when it has triggers, else from the start.

    llama.cpp parses the GBNF here and returns NULL (logging why) when it is invalid. Once the grammar's
    root is complete it allows only end-of-generation tokens (for gpt-oss `<|return|>`, `<|call|>`,
    `<|endoftext|>`), so a constrained answer ends right after its last character.
    """
    gbnf, root = grammar.gbnf.encode(), grammar.root.encode()
    with capture_llama_log() as log:
        if grammar.triggers:
            patterns = (ctypes.c_char_p * len(grammar.triggers))(*(t.encode() for t in grammar.triggers))
            no_tokens = (llama_cpp.llama_token * 0)()
            sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
                vocab, gbnf, root, patterns, len(grammar.triggers), no_tokens, 0
            )
        else:
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf, root)
    if not sampler:
        said = "; ".join(line for line in log if line.strip())[-500:] or "no reason logged"
        raise GrammarError(f"llama.cpp refused the grammar: {said}")
    return sampler


def check_grammar(grammar: Grammar, vocab: llama_cpp.llama_vocab_p) -> None:
    """Raise `GrammarError` when llama.cpp cannot parse *grammar*; build nothing that lasts."""
    llama_cpp.llama_sampler_free(grammar_sampler(grammar, vocab))
