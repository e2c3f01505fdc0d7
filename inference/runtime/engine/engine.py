"""One engine per worker process: continuous batching of many generations over one llama.cpp context.

Task threads call `Engine.submit` and iterate the returned `Generation`; a single engine thread owns
the llama.cpp model and context. Every step it admits waiting requests into free slots, builds one
batch holding the next token of every decoding sequence plus bounded prefill chunks, runs one
`llama_decode`, samples every sequence at once (`sampling.py`: numpy over the step's logits, each sequence
with its own settings and seed; grammar-constrained ones on llama.cpp's own sampler chain) and hands tokens
to the waiting iterators. Slots are llama.cpp sequence ids; a finished generation with a `cache_key` leaves
its KV in place so the conversation's next turn only prefills what is new. At the end of such a
generation's prompt the engine also copies the slot's sliding-window cells aside (a checkpoint, within a byte
budget), because llama.cpp frees those cells of an idle sequence once other sequences need the room: the
full-attention cells stay, and restoring the window from the checkpoint keeps the prefix reusable on a busy
server.

Every reply opens with harmony's header (`<|channel|>analysis<|message|>`, mostly the same as the last
reply's) before any text a person sees. The engine decodes the opening the last reply began with together
with each prompt's end (a draft): every drafted token the model then samples is already in the KV, so the
token after it is sampled in the same step, and the first text comes up to three steps sooner. The model
samples every token as without the draft (in order, from its own logits, with the sequence's sampler); only
the cells of the drafted tokens it did not sample are removed.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import llama_cpp

from ..tokens import MESSAGE
from . import llama as ll
from .errors import EngineStoppedError, GrammarError, ModelLoadError
from .sampling import SequenceSampler, sample_rows
from .settings import EngineSettings, SamplingParams

__all__ = ["Engine", "EngineTimings", "Generation", "GenerationStats", "StopReason"]

logger = logging.getLogger(__name__)

StopReason = Literal["stop_token", "max_tokens", "cancelled", "error", "context_full"]

# A decode with at least this many tokens gets the abort callback: long prefills can then be cut short
# when every sequence in them is cancelled. Short decode steps skip it, because llama.cpp calls the
# callback for every graph node and each call takes the GIL.
ABORT_CHECK_MIN_TOKENS = 128

# GPTOSS_SLOTS=auto keeps this share of the memory left after loading the model (at least the minimum) for
# llama.cpp's compute buffers, which grow with the total context, and stops at this many slots.
AUTO_RESERVE_SHARE = 0.1
AUTO_RESERVE_MIN_BYTES = 1 << 30
AUTO_MAX_SLOTS = 64

# The longest opening the engine drafts (`_draft`): harmony's message header before the text, as
# `<|channel|>analysis<|message|>`, or a call's
# `<|channel|>commentary to=functions.f <|constrain|>json<|message|>`.
MAX_OPENING = 12

_END = object()


@dataclass(slots=True)
class GenerationStats:
    """What a generation cost and why it stopped; final once the iterator is exhausted."""

    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    queue_wait_s: float | None = None
    ttft_s: float | None = None
    decode_tps: float | None = None
    stop_reason: StopReason | None = None
    # Tokens of the opening that came from the draft decoded with the prompt's end, a step early each.
    drafted_tokens: int = 0


class Generation(Iterator[int]):
    """A submitted request: iterate it (blocking) for token ids, the final stop token included."""

    def __init__(
        self,
        engine: Engine,
        gen_id: int,
        prompt: list[int],
        sampling: SamplingParams,
        max_tokens: int,
        stop_tokens: frozenset[int],
        cache_key: str | None,
    ) -> None:
        self.id = gen_id
        self.prompt = prompt
        self.sampling = sampling
        self.max_tokens = max_tokens
        self.stop_tokens = stop_tokens
        self.cache_key = cache_key
        self.stats = GenerationStats(prompt_tokens=len(prompt))
        self.error: str | None = None
        # Engine step number and monotonic time of every generated token, for tests and diagnostics.
        self.token_steps: list[int] = []
        self.token_times: list[float] = []
        self.submitted_at = time.monotonic()
        self._engine = engine
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._done = threading.Event()

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> int:
        """Block until the next token or the end of the generation."""
        item = self._queue.get()
        if item is _END:
            self._queue.put(_END)  # stay exhausted for later calls
            raise StopIteration
        assert isinstance(item, int)
        return item

    def cancel(self) -> None:
        """Ask the engine to stop this generation; its slot is freed at the next engine step."""
        if not self._done.is_set():
            self._cancelled.set()
            self._engine._wake()

    @property
    def cancelled(self) -> bool:
        """Return whether cancel() was called."""
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        """Return whether the generation has finished (its stats are final)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the generation finishes; return False on timeout."""
        return self._done.wait(timeout)

    def _finish(self, reason: StopReason, error: str | None) -> None:
        now = time.monotonic()
        stats = self.stats
        stats.stop_reason = reason
        if error is not None:
            self.error = error
        if stats.queue_wait_s is None:
            stats.queue_wait_s = now - self.submitted_at
        if len(self.token_times) > 1:
            span = self.token_times[-1] - self.token_times[0]
            stats.decode_tps = (len(self.token_times) - 1) / span if span > 0 else None
        self._done.set()
        self._queue.put(_END)


@dataclass(frozen=True, slots=True)
class EngineTimings:
    """Where the engine thread's time went since it started: in `llama_decode`, and everything else."""

    steps: int
    busy_s: float  # admitting, building batches, decoding, sampling, handing tokens over
    decode_s: float  # inside llama_decode

    def python_ms_per_step(self, since: EngineTimings | None = None) -> float:
        """Return the engine's own (Python) time per step, in ms, over the steps after *since*."""
        base = since or EngineTimings(0, 0.0, 0.0)
        steps = self.steps - base.steps
        python_s = (self.busy_s - base.busy_s) - (self.decode_s - base.decode_s)
        return 1000 * python_s / steps if steps else 0.0


@dataclass(slots=True)
class _Active:
    """Engine-thread state of a generation that holds a slot.

    It samples with *batched* (numpy, with the step's other sequences) or, under a grammar, with llama.cpp's
    *chain*; exactly one of the two is set.
    """

    gen: Generation
    batched: SequenceSampler | None
    chain: llama_cpp.llama_sampler_p | None
    prefill_pos: int  # index into gen.prompt of the next token to prefill
    admitted: int  # admission order, to find the youngest
    next_token: int | None = None  # sampled but not yet decoded


@dataclass(slots=True)
class _Slot:
    """One llama.cpp sequence: the tokens whose KV it holds, and who owns it."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    active: _Active | None = None
    cache_key: str | None = None  # set while idle with a kept cache
    last_used: float = 0.0


@dataclass(slots=True)
class _Checkpoint:
    """A slot's sliding-window cells at the end of a prompt, for when llama.cpp has freed them since.

    It holds the window cells of *tokens* from position *first* on and continues their full-attention cells,
    which stay in the slot for as long as they are the beginning of the slot's tokens.
    """

    cache_key: str
    tokens: list[int]
    first: int
    data: ctypes.Array[ctypes.c_uint8]
    last_used: float


@dataclass(slots=True)
class _Entry:
    """One sequence's share of the current batch."""

    slot: _Slot
    n_tokens: int
    sample_index: int  # batch index whose logits are sampled, -1 when none
    prefill: bool
    # The drafted opening decoded after the prompt's end, at the batch indices after *sample_index*.
    draft: tuple[int, ...] = ()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Engine:
    """Serve many concurrent generations from one model through continuous batching."""

    def __init__(self, settings: EngineSettings) -> None:
        settings.validate()
        self.settings = settings
        self.load_log: list[str] = []
        self.n_slots = settings.n_slots
        self.n_ctx = 0  # total KV cells, known after load
        self.n_ctx_per_seq = 0  # longest sequence (prompt + generated) one slot can hold
        self.n_vocab = 0
        self.n_layer = 0
        self.step_count = 0
        self._busy_s = 0.0
        self._decode_s = 0.0
        self.aborted_decodes = 0  # decodes cut short because every sequence in them was cancelled
        self._cond = threading.Condition()
        self._waiting: deque[Generation] = deque()
        self._ids = itertools.count(1)
        self._admissions = itertools.count()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._running = False
        self._stopping = False
        self._busy = 0
        self._slots: list[_Slot] = [_Slot(seq=i) for i in range(settings.n_slots)]
        self._model: llama_cpp.llama_model_p | None = None
        self._ctx: llama_cpp.llama_context_p | None = None
        self._mem: llama_cpp.llama_memory_t | None = None
        self._vocab: llama_cpp.llama_vocab_p | None = None
        self._n_swa = 0  # sliding-window size of the model, known once it has loaded
        # Sliding-window checkpoints by slot, saved through a spare sequence id (None: checkpoints are off).
        self._checkpoints: dict[int, _Checkpoint] = {}
        self._checkpoint_bytes = 0
        self._scratch_seq: int | None = None
        self.restored_checkpoints = 0  # next turns whose window came back from a checkpoint
        # The opening (harmony's header) the last reply began with: drafted after each prompt (`_draft`).
        self._opening: tuple[int, ...] = ()
        self._batch: ll.LlamaBatch | None = None
        self._overrides: ll.TensorBuftOverrides | None = None
        self._batch_gens: list[Generation] = []
        self._abort_armed = False
        # Referenced for the context's lifetime: llama.cpp keeps only the raw function pointer.
        self._abort_cb = llama_cpp.ggml_abort_callback(self._should_abort)
        self._no_abort_cb = llama_cpp.ggml_abort_callback()

    # ----------------------------------------------------------------------------------------------
    # Public API (any thread)
    # ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine thread and block until the model is loaded; raise `ModelLoadError` if not."""
        if self._thread is not None:
            raise EngineStoppedError("Engine.start() was already called: create a new Engine to reload")
        self._thread = threading.Thread(target=self._run, name="llama-engine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._load_error is not None:
            self._thread.join()
            raise self._load_error

    def submit(
        self,
        prompt: list[int],
        *,
        sampling: SamplingParams,
        max_tokens: int,
        stop_tokens: frozenset[int],
        cache_key: str | None = None,
    ) -> Generation:
        """Queue a generation and return its token iterator; thread-safe.

        Raise ValueError for a prompt the model cannot take (empty, unknown token ids, longer than
        a slot holds) and `GrammarError` (a ValueError) for a grammar llama.cpp refuses, so a bad request
        fails alone and at once instead of inside a shared batch.
        """
        if not self._running or self._stopping:
            raise EngineStoppedError("the engine is not running: call start() first, or it was closed")
        prompt = list(prompt)
        if not prompt:
            raise ValueError("prompt is empty: render at least one token")
        if max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens} must be at least 1")
        n_vocab = self.n_vocab
        bad = next((t for t in prompt if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise ValueError(f"prompt token id {bad} is outside the model's vocabulary (0..{n_vocab - 1})")
        if len(prompt) >= self.n_ctx_per_seq:
            raise ValueError(
                f"prompt has {len(prompt)} tokens but one sequence holds at most {self.n_ctx_per_seq - 1} "
                "plus a reply: shorten the conversation or raise n_ctx"
            )
        if sampling.grammar is not None:
            # Parsed here, in the caller's thread (llama.cpp only reads the vocabulary), so a bad grammar
            # fails its own request with llama.cpp's reason instead of reaching the engine thread.
            assert self._vocab is not None
            ll.check_grammar(sampling.grammar, self._vocab)
        gen = Generation(
            self, next(self._ids), prompt, sampling, max_tokens, frozenset(stop_tokens), cache_key
        )
        with self._cond:
            if self._stopping:
                raise EngineStoppedError("the engine is shutting down")
            self._waiting.append(gen)
            self._cond.notify()
        logger.debug("generation %d queued: %d prompt tokens, cache_key=%s", gen.id, len(prompt), cache_key)
        return gen

    def busy_slots(self) -> int:
        """Return how many slots are running a generation (idle caches do not count)."""
        return self._busy

    def queue_depth(self) -> int:
        """Return how many submitted generations wait for a slot."""
        return len(self._waiting)

    def timings(self) -> EngineTimings:
        """Return the engine thread's time so far (read it before and after a run to time that run)."""
        return EngineTimings(self.step_count, self._busy_s, self._decode_s)

    def cached_keys(self) -> list[str]:
        """Return the cache keys of idle slots that keep their KV, least recently used first."""
        idle = [s for s in self._slots if s.active is None and s.cache_key is not None]
        return [s.cache_key for s in sorted(idle, key=lambda s: s.last_used) if s.cache_key is not None]

    def checkpointed_keys(self) -> list[str]:
        """Return the cache keys of conversations holding a window checkpoint, least recently used first."""
        held = sorted(self._checkpoints.values(), key=lambda c: c.last_used)
        return [c.cache_key for c in held]

    def checkpoint_bytes(self) -> int:
        """Return the host memory the window checkpoints take now."""
        return self._checkpoint_bytes

    def close(self) -> None:
        """Stop the engine thread, fail what is still queued or running, and free llama.cpp objects."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # ----------------------------------------------------------------------------------------------
    # Loading (engine thread)
    # ----------------------------------------------------------------------------------------------

    def _load(self) -> None:
        settings = self.settings
        path = settings.model_path
        if not path.exists():
            raise ModelLoadError(
                f"model file {path} does not exist: download the model or point "
                f"{settings.called('model_path')} at a local gpt-oss GGUF (for split files, the first shard)"
            )
        if not path.is_file():
            raise ModelLoadError(
                f"model path {path} is not a file: "
                f"point {settings.called('model_path')} at the .gguf file itself"
            )
        info = ll.read_gguf_info(path)
        if info.architecture != ll.GPT_OSS_ARCH:
            raise ModelLoadError(
                f"{path.name} is a {info.architecture or 'unknown'!r} model, not gpt-oss: this engine serves "
                "only gpt-oss GGUF files (gpt-oss-20b, gpt-oss-120b)"
            )
        blocks = info.block_count
        if settings.n_cpu_moe and blocks is not None and settings.n_cpu_moe > blocks:
            raise ModelLoadError(
                f"{settings.stated('n_cpu_moe')} exceeds the model's {blocks} layers: use at most {blocks}, "
                f"or {settings.stated('cpu_moe', True)} to keep every expert on CPU"
            )
        patterns = ll.expert_override_patterns(n_cpu_moe=settings.n_cpu_moe, cpu_moe=settings.cpu_moe)
        self._overrides = ll.TensorBuftOverrides(patterns) if patterns else None
        ll.backend_init()
        started = time.monotonic()
        with ll.capture_llama_log() as log:
            self.load_log = log
            model = llama_cpp.llama_model_load_from_file(
                str(path).encode(), ll.model_params(settings, self._overrides)
            )
            if not model:
                raise ModelLoadError(f"llama.cpp could not load {path.name}: {_last_error(log)}")
            self._model = model
            arch = ll.model_meta(model, "general.architecture")
            if arch != ll.GPT_OSS_ARCH:
                raise ModelLoadError(f"{path.name} is a {arch!r} model, not gpt-oss: use a gpt-oss GGUF")
            if settings.auto_slots:
                self._size_slots(model)
                settings = self.settings
            self._check_kv_fits(model)
            ctx = llama_cpp.llama_init_from_model(model, ll.context_params(settings))
            if not ctx:
                raise ModelLoadError(
                    f"llama.cpp could not allocate a context of {settings.n_ctx} KV cells for "
                    f"{settings.n_slots} slots: {_smaller_kv_advice(settings)}. "
                    f"llama.cpp said: {_last_error(log)}"
                )
            self._ctx = ctx
        self._overrides = None  # the model has copied the patterns; the array may go
        self._mem = llama_cpp.llama_get_memory(ctx)
        # gpt-oss's even layers attend to a sliding window; llama.cpp prunes their older cells as a sequence
        # grows, so a cached prefix is reusable only while the window before its end is still there.
        self._n_swa = int(llama_cpp.llama_model_n_swa(model))
        if self._n_swa > 0 and settings.checkpoint_bytes > 0:
            self._scratch_seq = ll.scratch_seq(settings)
        vocab = llama_cpp.llama_model_get_vocab(model)
        self._vocab = vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.n_layer = llama_cpp.llama_model_n_layer(model)
        self.n_ctx = llama_cpp.llama_n_ctx(ctx)
        n_ctx_train = llama_cpp.llama_model_n_ctx_train(model)
        self.n_ctx_per_seq = (
            min(llama_cpp.llama_n_ctx_seq(ctx), n_ctx_train) if n_ctx_train > 0 else self.n_ctx
        )
        # llama.cpp clamps n_batch to n_ctx; a larger batch would trip its assertion, not return an error.
        self._batch = ll.LlamaBatch(llama_cpp.llama_n_batch(ctx), settings.n_slots)
        logger.info(
            "engine loaded %s in %.1fs: %d layers, n_ctx=%d (%d per sequence), %d slots, kv=%s, "
            "n_gpu_layers=%d, n_cpu_moe=%d, cpu_moe=%s",
            path.name,
            time.monotonic() - started,
            self.n_layer,
            self.n_ctx,
            self.n_ctx_per_seq,
            self.n_slots,
            settings.kv_type,
            settings.n_gpu_layers,
            settings.n_cpu_moe,
            settings.cpu_moe,
        )

    def _size_slots(self, model: llama_cpp.llama_model_p) -> None:
        """Choose as many slots as the memory left after loading the model holds (GPTOSS_SLOTS=auto).

        Each slot gets the KV cells of one conversation's context; a share of the free memory stays for
        llama.cpp's compute buffers. On a CPU the mapped weights must stay in RAM too, so they count as used.
        """
        settings = self.settings
        cells = settings.n_ctx // settings.n_slots
        per_slot = ll.kv_cache_bytes(model, replace(settings, n_ctx=cells, n_slots=1, auto_slots=False))
        memory = ll.kv_memory(settings)
        if memory is None:
            raise ModelLoadError(
                f"{settings.called('n_slots')}=auto needs to know the free memory, and ggml lists no device: "
                f"set {settings.called('n_slots')} to a number"
            )
        weights = 0 if memory.on_gpu or self._overrides is not None else llama_cpp.llama_model_size(model)
        left = memory.free - weights
        reserve = max(AUTO_RESERVE_MIN_BYTES, int(left * AUTO_RESERVE_SHARE))
        fit = (left - reserve) // per_slot
        if fit < 1:
            raise ModelLoadError(
                f"{settings.called('n_slots')}=auto: {_gib(left)} of {memory.where} is left after loading "
                f"the model, too little for one slot's KV cache ({cells} tokens, {settings.kv_type}: "
                f"{_gib(per_slot)}) beside {_gib(reserve)} for llama.cpp's buffers: "
                f"{_smaller_kv_advice(settings)}"
            )
        slots = min(fit, AUTO_MAX_SLOTS, settings.n_batch)
        logger.info(
            "%s=auto: %s of %s free after loading the model%s, less %s kept for llama.cpp's buffers, "
            "leaves %s; one slot's KV cache (%d tokens, %s) takes %s: %d slots%s",
            settings.called("n_slots"),
            _gib(memory.free),
            memory.where,
            f" ({_gib(weights)} of it the mapped weights)" if weights else "",
            _gib(reserve),
            _gib(left - reserve),
            cells,
            settings.kv_type,
            _gib(per_slot),
            slots,
            f" (of {fit} that fit; at most {AUTO_MAX_SLOTS})" if slots < fit else "",
        )
        self.settings = replace(settings, n_ctx=cells * slots, n_slots=slots)
        self.n_slots = slots
        self._slots = [_Slot(seq=i) for i in range(slots)]

    def _check_kv_fits(self, model: llama_cpp.llama_model_p) -> None:
        """Refuse a KV cache larger than the memory it would live in, before llama.cpp tries."""
        settings = self.settings
        need = ll.kv_cache_bytes(model, settings)
        memory = ll.kv_memory(settings)
        if memory is None:
            return
        free, where = memory.free, memory.where
        if need > free:
            raise ModelLoadError(
                f"the KV cache for {settings.stated('n_ctx')} ({settings.kv_type}) needs "
                f"{need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB of {where} is free: "
                f"{_smaller_kv_advice(settings)}"
            )

    # ----------------------------------------------------------------------------------------------
    # The loop (engine thread)
    # ----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._load()
        except BaseException as exc:
            self._load_error = (
                exc
                if isinstance(exc, ModelLoadError)
                else ModelLoadError(f"loading {self.settings.model_path.name} failed: {exc}")
            )
            if self._load_error is not exc:
                self._load_error.__cause__ = exc
            self._free()
            self._ready.set()
            return
        self._running = True
        self._ready.set()
        try:
            while True:
                with self._cond:
                    while not self._stopping and not self._waiting and self._busy == 0:
                        self._cond.wait()
                    if self._stopping:
                        break
                    admitted = self._take_admissible()
                started = time.perf_counter()
                for gen, slot in admitted:
                    self._admit(gen, slot)
                self._step()
                self._busy_s += time.perf_counter() - started
        except BaseException:
            logger.exception("engine loop crashed; failing every generation")
            raise
        finally:
            self._running = False
            self._shutdown()

    def _take_admissible(self) -> list[tuple[Generation, _Slot]]:
        """Pop waiting generations that get a slot now (caller holds the lock)."""
        taken: list[tuple[Generation, _Slot]] = []
        claimed: set[int] = set()
        while self._waiting:
            gen = self._waiting[0]
            if gen.cancelled:
                self._waiting.popleft()
                gen._finish("cancelled", None)
                logger.debug("generation %d cancelled while queued", gen.id)
                continue
            slot = self._pick_slot(gen.cache_key, claimed)
            if slot is None:
                break
            self._waiting.popleft()
            claimed.add(slot.seq)
            taken.append((gen, slot))
        return taken

    def _pick_slot(self, cache_key: str | None, claimed: set[int]) -> _Slot | None:
        """Choose a slot: the idle cache of the same key, else an empty slot, else the LRU idle cache."""
        free = [s for s in self._slots if s.active is None and s.seq not in claimed]
        if not free:
            return None
        if cache_key is not None:
            for slot in free:
                if slot.cache_key == cache_key:
                    return slot
        empty = [s for s in free if not s.tokens]
        if empty:
            return empty[0]
        return min(free, key=lambda s: s.last_used)

    def _admit(self, gen: Generation, slot: _Slot) -> None:
        """Bind a generation to a slot, keeping the longest prefix of the slot's KV it can reuse."""
        assert self._mem is not None and self._vocab is not None
        batched: SequenceSampler | None = None
        chain: llama_cpp.llama_sampler_p | None = None
        if gen.sampling.grammar is None and self.settings.batched_sampling:
            batched = SequenceSampler.for_params(gen.sampling)
        else:
            try:
                chain = ll.make_sampler(gen.sampling, self._vocab)
            except GrammarError as error:  # checked at submit, so only a llama.cpp surprise lands here
                logger.error("generation %d failed: %s", gen.id, error)
                gen._finish("error", str(error))
                return
        if slot.cache_key is not None and slot.cache_key != gen.cache_key:
            logger.debug(
                "evicting idle cache %s from slot %d for generation %d", slot.cache_key, slot.seq, gen.id
            )
        slot.cache_key = None
        prompt = gen.prompt
        # Always re-evaluate the last prompt token: its logits give the first generated token.
        lcp = min(_common_prefix(slot.tokens, prompt), len(prompt) - 1)
        if lcp > 0 and self._n_swa > 0:
            pos_min = llama_cpp.llama_memory_seq_pos_min(self._mem, slot.seq)
            if pos_min > max(0, lcp - self._n_swa):
                # The sliding-window layers no longer hold the cells the first new token must see (the
                # same rule as llama.cpp's server): reusing the prefix as it is would answer from a broken
                # context. A checkpoint brings them back up to its end, else the prompt is prefilled anew.
                restored = self._restore_checkpoint(slot, lcp)
                logger.debug(
                    "slot %d: window cells before %d pruned (first kept %d): %s",
                    slot.seq,
                    lcp,
                    pos_min,
                    f"restored a checkpoint of {restored} tokens" if restored else "prefilling anew",
                )
                lcp = restored
        checkpoint = self._checkpoints.get(slot.seq)
        if checkpoint is not None and checkpoint.first > max(0, lcp - self._n_swa):
            self._drop_checkpoint(slot.seq)  # what stays of the slot is too short for it to serve again
        if lcp < len(slot.tokens):
            if not llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, lcp, -1):
                llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
                lcp = 0
            del slot.tokens[lcp:]
        gen.stats.reused_tokens = lcp
        gen.stats.queue_wait_s = time.monotonic() - gen.submitted_at
        slot.active = _Active(
            gen=gen, batched=batched, chain=chain, prefill_pos=lcp, admitted=next(self._admissions)
        )
        self._busy += 1
        logger.debug(
            "generation %d admitted to slot %d: %d reused, %d to prefill",
            gen.id,
            slot.seq,
            lcp,
            len(prompt) - lcp,
        )

    def _step(self) -> None:
        """Advance every active sequence by one `llama_decode`."""
        assert self._batch is not None and self._ctx is not None
        self.step_count += 1
        n_ctx_seq = self.n_ctx_per_seq
        for slot in self._slots:
            active = slot.active
            if active is not None and active.gen.cancelled:
                self._finish(slot, "cancelled")
        batch = self._batch
        batch.clear()
        entries: list[_Entry] = []
        # Decoding sequences first: a prefill never delays another stream's next token.
        for slot in self._slots:
            active = slot.active
            if active is None or active.next_token is None:
                continue
            pos = len(slot.tokens)
            if pos >= n_ctx_seq:
                self._finish(slot, "context_full")
                continue
            idx = batch.add(active.next_token, pos, slot.seq, True)
            entries.append(_Entry(slot, 1, idx, prefill=False))
        room = batch.capacity - batch.n_tokens
        prefilling = sorted(
            (s for s in self._slots if s.active is not None and s.active.next_token is None),
            key=lambda s: s.active.admitted if s.active is not None else 0,
        )
        for slot in prefilling:
            if room <= 0:
                break
            active = slot.active
            assert active is not None
            prompt = active.gen.prompt
            start = active.prefill_pos
            n = min(self.settings.prefill_chunk, room, len(prompt) - start)
            last = start + n == len(prompt)
            idx = batch.add_sequence(prompt[start : start + n], len(slot.tokens), slot.seq, last)
            draft = self._draft(active, room - n) if last else ()
            for k, token in enumerate(draft):
                batch.add(token, len(prompt) + k, slot.seq, True)
            entries.append(_Entry(slot, n, idx if last else -1, prefill=True, draft=draft))
            room -= n + len(draft)
        if not entries:
            return
        self._batch_gens = [e.slot.active.gen for e in entries if e.slot.active is not None]
        self._arm_abort(batch.n_tokens >= ABORT_CHECK_MIN_TOKENS)
        decode_started = time.perf_counter()
        rc = batch.decode(self._ctx)
        self._decode_s += time.perf_counter() - decode_started
        if rc == 0:
            self._after_decode(entries)
        elif rc == 1:
            self._on_no_kv_slot(entries)
        elif rc == 2:
            self._on_aborted(entries)
        else:
            self._on_decode_error(entries, rc)

    def _after_decode(self, entries: list[_Entry]) -> None:
        step = self.step_count
        now = time.monotonic()
        sampled: list[_Entry] = []
        for entry in entries:
            slot = entry.slot
            active = slot.active
            assert active is not None
            if entry.prefill:
                start = active.prefill_pos
                slot.tokens.extend(active.gen.prompt[start : start + entry.n_tokens])
                active.prefill_pos = start + entry.n_tokens
                active.gen.stats.prefilled_tokens += entry.n_tokens
                cache_key = active.gen.cache_key
                if cache_key is not None and active.prefill_pos == len(active.gen.prompt):
                    self._save_checkpoint(slot, cache_key)
            else:
                assert active.next_token is not None
                slot.tokens.append(active.next_token)
            if entry.sample_index >= 0:
                sampled.append(entry)
        for entry, token in zip(sampled, self._sample(sampled), strict=True):
            if self._emit(entry.slot, token, step, now) and entry.draft:
                self._follow_draft(entry, token, step, now)
            elif entry.draft:
                self._drop_draft(entry.slot)

    def _emit(self, slot: _Slot, token: int, step: int, now: float) -> bool:
        """Hand the sampled *token* to its generation; return whether the generation goes on."""
        active = slot.active
        assert active is not None
        gen = active.gen
        active.next_token = token
        stats = gen.stats
        stats.generated_tokens += 1
        gen.token_steps.append(step)
        gen.token_times.append(now)
        if stats.ttft_s is None:
            stats.ttft_s = now - gen.submitted_at
        gen._queue.put(token)
        if token == MESSAGE and stats.generated_tokens <= MAX_OPENING:
            self._opening = (*slot.tokens[len(gen.prompt) :], token)  # the next prompt's draft
        if token in gen.stop_tokens:
            self._finish(slot, "stop_token")
        elif stats.generated_tokens >= gen.max_tokens:
            self._finish(slot, "max_tokens")
        elif len(slot.tokens) >= self.n_ctx_per_seq:
            self._finish(slot, "context_full")
        else:
            return True
        return False

    def _draft(self, active: _Active, room: int) -> tuple[int, ...]:
        """Return the opening to decode after *active*'s prompt, in the same batch: the opening the last reply
        began with (harmony's header, the same for most replies), as much as fits the batch, the slot and the
        generation's token budget."""
        if not self.settings.draft_opening:
            return ()
        gen = active.gen
        n = min(len(self._opening), room, gen.max_tokens - 1, self.n_ctx_per_seq - 1 - len(gen.prompt))
        return self._opening[: max(0, n)]

    def _follow_draft(self, entry: _Entry, token: int, step: int, now: float) -> None:
        """Go on along the drafted opening while the model samples it, then drop the rest of it.

        Each drafted token the model has just sampled is in the KV already (decoded with the prompt's end), so
        the token after it is sampled from its logits now instead of a step later. Every token is sampled
        from the model's own distribution, in order, with the sequence's own sampler: the draft changes when
        the tokens come, never which.
        """
        slot = entry.slot
        for k, drafted in enumerate(entry.draft):
            if token != drafted:
                break
            active = slot.active
            assert active is not None
            slot.tokens.append(drafted)
            active.gen.stats.drafted_tokens += 1
            token = self._sample([_Entry(slot, 1, entry.sample_index + 1 + k, prefill=False)])[0]
            if not self._emit(slot, token, step, now):
                break
        self._drop_draft(slot)

    def _drop_draft(self, slot: _Slot) -> None:
        """Remove the cells of the drafted tokens the model did not sample: the KV holds the slot's tokens."""
        assert self._mem is not None
        llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, len(slot.tokens), -1)

    def _sample(self, entries: list[_Entry]) -> list[int]:
        """Sample the next token of each entry: all batched ones in one pass, grammar ones by llama.cpp."""
        assert self._ctx is not None
        ctx = self._ctx
        actives = [entry.slot.active for entry in entries]
        tokens = [0] * len(entries)
        batched = [k for k, active in enumerate(actives) if active is not None and active.batched is not None]
        if batched:
            block, rows = ll.step_logits(ctx, [entries[k].sample_index for k in batched], self.n_vocab)
            samplers: list[SequenceSampler | None] = [None] * len(block)
            for k, row in zip(batched, rows, strict=True):
                samplers[row] = actives[k].batched  # type: ignore[union-attr]
            by_row = sample_rows(block, samplers)
            for k, row in zip(batched, rows, strict=True):
                token = by_row[row]
                assert token is not None
                tokens[k] = token
        for k, active in enumerate(actives):
            if active is not None and active.chain is not None:
                tokens[k] = int(llama_cpp.llama_sampler_sample(active.chain, ctx, entries[k].sample_index))
        return tokens

    def _on_no_kv_slot(self, entries: list[_Entry]) -> None:
        """Free KV cells: drop the least recently used idle cache, else fail the youngest generation.

        The batch is rebuilt next step, so nothing of this one is lost.
        """
        idle = [s for s in self._slots if s.active is None and s.tokens]
        if idle:
            victim = min(idle, key=lambda s: s.last_used)
            logger.info(
                "KV cache full: evicting idle cache of slot %d (%d tokens)", victim.seq, len(victim.tokens)
            )
            self._clear_slot(victim)
            return
        actives = [e.slot for e in entries if e.slot.active is not None]
        youngest = max(actives, key=lambda s: s.active.admitted if s.active is not None else -1)
        assert youngest.active is not None
        logger.warning(
            "KV cache full (n_ctx=%d): stopping generation %d with context_full",
            self.n_ctx,
            youngest.active.gen.id,
        )
        self._finish(youngest, "context_full", keep_cache=False)

    def _on_aborted(self, entries: list[_Entry]) -> None:
        """Finish the cancelled sequences of an aborted decode; part of it may sit in the KV cache."""
        self.aborted_decodes += 1
        for entry in entries:
            if entry.slot.active is None:
                continue
            if self._stopping:
                self._finish(entry.slot, "error", error="the engine was shut down", keep_cache=False)
            else:
                self._finish(entry.slot, "cancelled", keep_cache=False)

    def _on_decode_error(self, entries: list[_Entry], rc: int) -> None:
        """Fail the generations of a failed decode and keep serving the others."""
        message = f"llama_decode failed with code {rc}" + (" (invalid batch)" if rc == -1 else "")
        for entry in entries:
            if entry.slot.active is not None:
                logger.error("generation %d failed: %s", entry.slot.active.gen.id, message)
                self._finish(entry.slot, "error", error=message, keep_cache=False)

    def _finish(
        self, slot: _Slot, reason: StopReason, *, error: str | None = None, keep_cache: bool = True
    ) -> None:
        """Release a slot: keep its KV as an idle cache when the generation has a key, else clear it."""
        active = slot.active
        assert active is not None
        gen = active.gen
        if active.chain is not None:
            llama_cpp.llama_sampler_free(active.chain)
        slot.active = None
        self._busy -= 1
        slot.last_used = time.monotonic()
        if keep_cache and gen.cache_key is not None and slot.tokens:
            for other in self._slots:
                if other is not slot and other.active is None and other.cache_key == gen.cache_key:
                    self._clear_slot(other)
            slot.cache_key = gen.cache_key
        else:
            self._clear_slot(slot)
        gen._finish(reason, error)
        logger.debug("generation %d finished: %s, %d tokens", gen.id, reason, gen.stats.generated_tokens)

    def _clear_slot(self, slot: _Slot) -> None:
        assert self._mem is not None
        llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
        slot.tokens.clear()
        slot.cache_key = None
        self._drop_checkpoint(slot.seq)

    def _save_checkpoint(self, slot: _Slot, cache_key: str) -> None:
        """Keep the slot's window cells at the end of a prompt, making room in the budget LRU first.

        Right after the prompt's last decode the window before its end is whole: llama.cpp frees only cells
        that the sequence's next token no longer sees. One cell more than the window is kept where llama.cpp
        still has it, so that the same prompt sent again (which re-evaluates its last token) can use it too.
        """
        if self._scratch_seq is None:
            return
        assert self._ctx is not None
        self._drop_checkpoint(slot.seq)
        n = len(slot.tokens)
        saved = ll.save_window(self._ctx, slot.seq, self._scratch_seq, max(0, n - 1 - self._n_swa), n)
        if saved is None or saved[1] > max(0, n - self._n_swa):
            logger.warning("slot %d: llama.cpp lost window cells before the checkpoint was saved", slot.seq)
            return
        data, first = saved
        size, budget = len(data), self.settings.checkpoint_bytes
        if size > budget:
            logger.info(
                "window checkpoint of conversation %s (%d bytes) exceeds the budget of %d bytes: not kept",
                cache_key,
                size,
                budget,
            )
            return
        while self._checkpoint_bytes + size > budget:
            oldest = min(self._checkpoints, key=lambda seq: self._checkpoints[seq].last_used)
            logger.info(
                "window checkpoints reach their budget of %d bytes: "
                "dropping the least recently used, of conversation %s (slot %d)",
                budget,
                self._checkpoints[oldest].cache_key,
                oldest,
            )
            self._drop_checkpoint(oldest)
        self._checkpoints[slot.seq] = _Checkpoint(cache_key, list(slot.tokens), first, data, time.monotonic())
        self._checkpoint_bytes += size
        logger.debug("slot %d: window checkpoint of %d tokens saved (%d bytes)", slot.seq, n, size)

    def _restore_checkpoint(self, slot: _Slot, lcp: int) -> int:
        """Bring back the slot's window cells from its checkpoint; return how many tokens it keeps (0: none).

        Of the *lcp* tokens the slot shares with the new prompt, it keeps those up to the checkpoint's end, if
        the checkpoint was taken of these very tokens and holds the window before the position it resumes at.
        """
        assert self._ctx is not None
        checkpoint = self._checkpoints.get(slot.seq)
        if checkpoint is None:
            return 0
        kept = min(len(checkpoint.tokens), lcp)
        if checkpoint.first > max(0, kept - self._n_swa) or slot.tokens[:kept] != checkpoint.tokens[:kept]:
            return 0
        if not ll.restore_window(self._ctx, slot.seq, checkpoint.data):
            logger.warning("slot %d: llama.cpp refused its window checkpoint: prefilling anew", slot.seq)
            return 0
        checkpoint.last_used = time.monotonic()
        self.restored_checkpoints += 1
        return kept

    def _drop_checkpoint(self, seq: int) -> None:
        checkpoint = self._checkpoints.pop(seq, None)
        if checkpoint is not None:
            self._checkpoint_bytes -= len(checkpoint.data)

    def _arm_abort(self, armed: bool) -> None:
        if armed != self._abort_armed and self._ctx is not None:
            llama_cpp.llama_set_abort_callback(
                self._ctx, self._abort_cb if armed else self._no_abort_cb, None
            )
            self._abort_armed = armed

    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        """Tell llama.cpp to stop the running decode when nobody wants its result any more."""
        if self._stopping:
            return True
        gens = self._batch_gens
        return bool(gens) and all(g.cancelled for g in gens)

    def _shutdown(self) -> None:
        with self._cond:
            waiting = list(self._waiting)
            self._waiting.clear()
        for gen in waiting:
            gen._finish("error", "the engine was shut down before this generation started")
        for slot in self._slots:
            if slot.active is not None:
                self._finish(slot, "error", error="the engine was shut down", keep_cache=False)
        self._free()
        logger.info("engine stopped after %d steps", self.step_count)

    def _free(self) -> None:
        self._checkpoints.clear()
        self._checkpoint_bytes = 0
        if self._batch is not None:
            self._batch.free()
            self._batch = None
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
            self._mem = None
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None
        self._overrides = None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _smaller_kv_advice(settings: EngineSettings) -> str:
    """Say how to shrink the KV cache, in the words of whoever configured *settings*."""
    advice = f"lower {settings.called('n_ctx')}"
    smaller = {"f16": "q8_0", "q8_0": "q4_0"}.get(settings.kv_type)
    return f"{advice} (or use {settings.stated('kv_type', smaller)})" if smaller else advice


def _last_error(log: Iterable[str]) -> str:
    """Return llama.cpp's most telling error line from a load log."""
    lines = [line.strip() for line in log if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "failed" in line.lower():
            return line
    return lines[-1] if lines else "no details in llama.cpp's log"
