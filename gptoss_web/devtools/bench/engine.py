"""The engine part of `make bench` (pipeline.py beside it measures the pipeline).

``python -m gptoss_web.devtools.bench engine [--quick]`` measures, side by side in one process and on the same
generated models:

- decode throughput of the Engine at 1, 2, 4 and 8 concurrent streams (random "tiny" model);
- a bare low-level llama.cpp batched decode loop at 8 streams (no Engine, minimal Python), to show
  what the Engine's scheduling costs (``batch_efficiency``);
- llama-cpp-python's high-level ``Llama.generate`` single stream (``overhead_ratio``);
- the engine's own Python time per step at 8, 16 and 32 streams, sampling each sequence with its own
  llama.cpp sampler chain (as it did first) and all of them together (``sampling_gain_32``);
- time to first token of a 2,000-token conversation's next turn, cold and with prefix reuse
  (random "bench" model, 512 wide, 4 layers), on a quiet server and after 32 other conversations went
  through the slots (its sliding-window cells then come back from the engine's checkpoint).

Each measurement runs a few times, interleaved, and the median is reported. The results are printed
as a table and as JSON, and merged into ``var/bench/latest.json`` under ``engine`` and ``prefix``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from gptoss_web.devtools.bench.table import Row, Table, Target
from gptoss_web.devtools.tinymodel import SHAPES, write_random_model
from inference.runtime.engine import llama as ll
from inference.runtime.engine.engine import Engine
from inference.runtime.engine.settings import EngineSettings, SamplingParams
from inference.runtime.tokens import ORDINARY_TOKEN_COUNT

logger = logging.getLogger(__name__)

BENCH_DIR = Path("var/bench")
LATEST = BENCH_DIR / "latest.json"
STREAMS = (1, 2, 4, 8)
MANY_STREAMS = (8, 16, 32)
GREEDY = SamplingParams(temperature=0.0)
NO_STOPS: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Plan:
    """How long each measurement runs."""

    decode_tokens: int
    repeats: int
    conversation_tokens: int = 2000
    next_turn_tokens: int = 40
    other_conversations: int = 32
    other_tokens: int = (
        800  # three at a time, more than a 2,000-token conversation's window cells and the rest
    )


FULL = Plan(decode_tokens=256, repeats=5)
QUICK = Plan(decode_tokens=64, repeats=3)


def _random_prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(ORDINARY_TOKEN_COUNT) for _ in range(n)]


def _model(name: str) -> Path:
    """Return a generated random-weight model of the named shape, written once under var/bench."""

    # The name carries the shape, so a changed shape never reuses a stale file.
    digest = hashlib.sha256(repr(SHAPES[name]).encode()).hexdigest()[:10]
    path = BENCH_DIR / "models" / f"random-{name}-{digest}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_random_model(tmp, SHAPES[name])
        tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------


def engine_aggregate_tps(engine: Engine, streams: int, n_tokens: int, rng: random.Random) -> float:
    """Return tokens/s over the window in which all *streams* decode at once."""
    gens = [
        engine.submit(_random_prompt(rng, 16), sampling=GREEDY, max_tokens=n_tokens, stop_tokens=NO_STOPS)
        for _ in range(streams)
    ]
    for gen in gens:
        for _ in gen:
            pass
    start = max(g.token_times[0] for g in gens)
    end = max(g.token_times[-1] for g in gens)
    produced = sum(sum(1 for t in g.token_times if t > start) for g in gens)
    return produced / (end - start)


def high_level_tps(llm: llama_cpp.Llama, n_tokens: int, rng: random.Random) -> float:
    """Return llama-cpp-python's `Llama.generate` decode tokens/s (first token to last)."""
    times: list[float] = []
    for _ in llm.generate(_random_prompt(rng, 16), temp=0.0, reset=True):
        times.append(time.perf_counter())
        if len(times) >= n_tokens:
            break
    return (len(times) - 1) / (times[-1] - times[0])


class BareBatchedLoop:
    """The smallest batched decode loop llama.cpp allows: the ceiling for the Engine's throughput."""

    def __init__(self, model_path: Path, streams: int, settings: EngineSettings) -> None:
        ll.backend_init()
        self.streams = streams
        self.model = llama_cpp.llama_model_load_from_file(
            str(model_path).encode(), ll.model_params(settings, None)
        )
        self.ctx = llama_cpp.llama_init_from_model(self.model, ll.context_params(settings))
        if not self.model or not self.ctx:
            raise RuntimeError("bare loop: llama.cpp could not load the model")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = ll.LlamaBatch(llama_cpp.llama_n_batch(self.ctx), streams)
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.samplers = [ll.make_sampler(GREEDY, vocab) for _ in range(streams)]

    def tps(self, n_tokens: int, rng: random.Random) -> float:
        """Prefill one short prompt per stream, then time *n_tokens* batched decode steps."""
        llama_cpp.llama_memory_clear(self.mem, True)
        batch, ctx = self.batch, self.ctx
        batch.clear()
        last = []
        for seq in range(self.streams):
            prompt = _random_prompt(rng, 16)
            last.append(batch.add_sequence(prompt, 0, seq, True))
        if batch.decode(ctx) != 0:
            raise RuntimeError("bare loop: prefill failed")
        tokens = [llama_cpp.llama_sampler_sample(s, ctx, i) for s, i in zip(self.samplers, last, strict=True)]
        pos = 16
        start = time.perf_counter()
        for _ in range(n_tokens - 1):
            batch.clear()
            for seq in range(self.streams):
                batch.add(tokens[seq], pos, seq, True)
            if batch.decode(ctx) != 0:
                raise RuntimeError("bare loop: decode failed")
            tokens = [llama_cpp.llama_sampler_sample(s, ctx, i) for i, s in enumerate(self.samplers)]
            pos += 1
        return self.streams * (n_tokens - 1) / (time.perf_counter() - start)

    def close(self) -> None:
        """Free the samplers, batch, context and model."""
        for sampler in self.samplers:
            llama_cpp.llama_sampler_free(sampler)
        self.batch.free()
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def bench_throughput(plan: Plan) -> dict[str, Any]:
    """Measure Engine, bare loop and high-level throughput on the random tiny model, interleaved."""
    path = _model("tiny")
    settings = EngineSettings(model_path=path, n_ctx=8 * (plan.decode_tokens + 64), n_slots=8)
    rng = random.Random(7)  # noqa: S311 - reproducible prompts, not secrets
    gen_threads, batch_threads = ll.default_threads()
    llm = llama_cpp.Llama(
        str(path),
        n_ctx=plan.decode_tokens + 64,
        flash_attn=True,
        verbose=False,
        n_threads=gen_threads,
        n_threads_batch=batch_threads,
    )
    bare = BareBatchedLoop(path, 8, settings)
    runs: dict[str, list[float]] = {"high_level": [], "bare_8": [], **{f"engine_{k}": [] for k in STREAMS}}
    with Engine(settings) as engine:
        for _ in range(plan.repeats):
            runs["high_level"].append(high_level_tps(llm, plan.decode_tokens, rng))
            for k in STREAMS:
                runs[f"engine_{k}"].append(engine_aggregate_tps(engine, k, plan.decode_tokens, rng))
            runs["bare_8"].append(bare.tps(plan.decode_tokens, rng))
    bare.close()
    llm.close()
    med = {name: statistics.median(values) for name, values in runs.items()}

    def ratio(num: str, den: str) -> float:
        # Ratios pair measurements taken seconds apart in the same repetition, so a neighbour's load
        # on a shared machine moves both sides; the median of the per-repetition ratios is reported.
        return statistics.median(a / b for a, b in zip(runs[num], runs[den], strict=True))

    return {
        "model": path.name,
        "threads": gen_threads,
        "decode_tokens": plan.decode_tokens,
        "repeats": plan.repeats,
        "single_stream_tps": round(med["engine_1"], 1),
        "aggregate_tps": {str(k): round(med[f"engine_{k}"], 1) for k in STREAMS},
        "speedup_8": round(ratio("engine_8", "engine_1"), 3),
        "bare_loop_8_tps": round(med["bare_8"], 1),
        "batch_efficiency": round(ratio("engine_8", "bare_8"), 3),
        "high_level_tps": round(med["high_level"], 1),
        "overhead_ratio": round(ratio("engine_1", "high_level"), 3),
        "runs": {name: [round(v, 1) for v in values] for name, values in runs.items()},
    }


def engine_python_ms(engine: Engine, streams: int, n_tokens: int, rng: random.Random) -> float:
    """Return the engine thread's own (Python) time per step while *streams* sampled generations run."""
    before = engine.timings()
    gens = [
        engine.submit(
            _random_prompt(rng, 16),
            sampling=SamplingParams(seed=rng.randrange(2**32)),  # gpt-oss's recommended sampling
            max_tokens=n_tokens,
            stop_tokens=NO_STOPS,
        )
        for _ in range(streams)
    ]
    for gen in gens:
        for _ in gen:
            pass
    return engine.timings().python_ms_per_step(before)


def bench_sampling(plan: Plan) -> dict[str, Any]:
    """Measure the engine's Python time per step at 8, 16 and 32 streams, interleaved on the random tiny
    model: each sequence sampled with its own llama.cpp chain (as before), and all together (sampling.py)."""
    path = _model("tiny")
    slots = max(MANY_STREAMS)
    rng = random.Random(13)  # noqa: S311 - reproducible prompts, not secrets
    runs: dict[str, list[float]] = {f"{way}_{k}": [] for way in ("chains", "batched") for k in MANY_STREAMS}
    engines = {
        way: Engine(
            EngineSettings(
                model_path=path,
                n_ctx=slots * (plan.decode_tokens + 64),
                n_slots=slots,
                batched_sampling=batched,
            )
        )
        for way, batched in (("chains", False), ("batched", True))
    }
    try:
        for engine in engines.values():
            engine.start()
        for _ in range(plan.repeats):
            for k in MANY_STREAMS:
                for way, engine in engines.items():
                    runs[f"{way}_{k}"].append(engine_python_ms(engine, k, plan.decode_tokens, rng))
    finally:
        for engine in engines.values():
            engine.close()
    med = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "python_ms_per_step": {
            way: {str(k): round(med[f"{way}_{k}"], 3) for k in MANY_STREAMS} for way in ("chains", "batched")
        },
        "sampling_gain_32": round(
            statistics.median(
                a / b for a, b in zip(runs[f"chains_{slots}"], runs[f"batched_{slots}"], strict=True)
            ),
            2,
        ),
        "runs": {name: [round(v, 3) for v in values] for name, values in runs.items()},
    }


def bench_prefix(plan: Plan) -> dict[str, Any]:
    """Time the first token of a long conversation's next turn, cold and with its KV cache reused."""
    path = _model("bench")
    n_conv = plan.conversation_tokens
    settings = EngineSettings(model_path=path, n_ctx=4 * (n_conv + 256), n_slots=4)
    rng = random.Random(11)  # noqa: S311 - reproducible prompts, not secrets
    cold_ms: list[float] = []
    warm_ms: list[float] = []
    tokens_cold = tokens_warm = 0
    with Engine(settings) as engine:
        for rep in range(plan.repeats):
            first_turn = _random_prompt(rng, n_conv - plan.next_turn_tokens - 16)
            key = f"bench-{rep}"
            reply = list(
                engine.submit(first_turn, sampling=GREEDY, max_tokens=16, stop_tokens=NO_STOPS, cache_key=key)
            )
            next_turn = [*first_turn, *reply, *_random_prompt(rng, plan.next_turn_tokens)]
            cold = engine.submit(next_turn, sampling=GREEDY, max_tokens=1, stop_tokens=NO_STOPS)
            list(cold)
            warm = engine.submit(
                next_turn, sampling=GREEDY, max_tokens=1, stop_tokens=NO_STOPS, cache_key=key
            )
            list(warm)
            if cold.stats.reused_tokens != 0:
                raise RuntimeError("prefix bench: the cold run reused a cache")
            # The warm run may find nothing reusable: llama.cpp prunes the sliding-window cells of a long
            # sequence, and the engine then prefills anew (inference/runtime/engine/engine.py, _admit).
            assert cold.stats.ttft_s is not None and warm.stats.ttft_s is not None
            cold_ms.append(cold.stats.ttft_s * 1000)
            warm_ms.append(warm.stats.ttft_s * 1000)
            tokens_cold, tokens_warm = cold.stats.prefilled_tokens, warm.stats.prefilled_tokens
    cold_med, warm_med = statistics.median(cold_ms), statistics.median(warm_ms)
    return {
        "model": path.name,
        "conversation_tokens": n_conv,
        "ttft_cold_ms": round(cold_med, 2),
        "ttft_warm_ms": round(warm_med, 2),
        "speedup": round(cold_med / warm_med, 1),
        "tokens_cold": tokens_cold,
        "tokens_warm": tokens_warm,
        "reused_tokens_warm": warm.stats.reused_tokens,
        "runs": {"cold_ms": [round(v, 2) for v in cold_ms], "warm_ms": [round(v, 2) for v in warm_ms]},
    }


def _go_through_other_conversations(engine: Engine, plan: Plan, rng: random.Random) -> None:
    """Put *plan*'s other conversations through the engine, three at a time, none of them kept."""
    for wave in range(0, plan.other_conversations, 3):
        others = [
            engine.submit(
                _random_prompt(rng, plan.other_tokens), sampling=GREEDY, max_tokens=4, stop_tokens=NO_STOPS
            )
            for _ in range(min(3, plan.other_conversations - wave))
        ]
        for other in others:
            list(other)


def bench_busy_prefix(plan: Plan) -> dict[str, Any]:
    """Time the first token of a long conversation's next turn after other conversations went through the
    slots, cold and with its cache reused (the engine restoring its sliding-window checkpoint).

    A reply that runs while the conversation is admitted, and ends after it, leaves free cells before the
    conversation's; the other conversations' prompts fill those and go on over the conversation's window cells
    that its next token no longer sees, which llama.cpp hands out again. The full-attention cells stay.
    """
    path = _model("bench")
    n_conv = plan.conversation_tokens
    settings = EngineSettings(model_path=path, n_ctx=4 * (n_conv + 256), n_slots=4)
    rng = random.Random(12)  # noqa: S311 - reproducible prompts, not secrets
    cold_ms: list[float] = []
    reused_ms: list[float] = []
    tokens_cold = tokens_reused = 0
    with Engine(settings) as engine:
        for rep in range(plan.repeats):
            first_turn = _random_prompt(rng, n_conv - plan.next_turn_tokens - 16)
            key = f"busy-{rep}"
            earlier = engine.submit(
                _random_prompt(rng, 64), sampling=GREEDY, max_tokens=64, stop_tokens=NO_STOPS
            )
            next(earlier)
            reply = list(
                engine.submit(first_turn, sampling=GREEDY, max_tokens=16, stop_tokens=NO_STOPS, cache_key=key)
            )
            list(earlier)
            _go_through_other_conversations(engine, plan, rng)
            next_turn = [*first_turn, *reply, *_random_prompt(rng, plan.next_turn_tokens)]
            cold = engine.submit(next_turn, sampling=GREEDY, max_tokens=1, stop_tokens=NO_STOPS)
            list(cold)
            restored = engine.restored_checkpoints
            reused = engine.submit(
                next_turn, sampling=GREEDY, max_tokens=1, stop_tokens=NO_STOPS, cache_key=key
            )
            list(reused)
            if engine.restored_checkpoints != restored + 1:
                raise RuntimeError(
                    "busy prefix bench: the next turn did not restore a window checkpoint "
                    f"({reused.stats.reused_tokens} tokens reused)"
                )
            assert cold.stats.ttft_s is not None and reused.stats.ttft_s is not None
            cold_ms.append(cold.stats.ttft_s * 1000)
            reused_ms.append(reused.stats.ttft_s * 1000)
            tokens_cold, tokens_reused = cold.stats.prefilled_tokens, reused.stats.prefilled_tokens
    cold_med, reused_med = statistics.median(cold_ms), statistics.median(reused_ms)
    return {
        "busy_other_conversations": plan.other_conversations,
        "busy_ttft_cold_ms": round(cold_med, 2),
        "busy_ttft_reused_ms": round(reused_med, 2),
        "busy_speedup": round(cold_med / reused_med, 1),
        "busy_tokens_cold": tokens_cold,
        "busy_tokens_reused": tokens_reused,
        "busy_runs": {
            "cold_ms": [round(v, 2) for v in cold_ms],
            "reused_ms": [round(v, 2) for v in reused_ms],
        },
    }


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------


def merge_latest(path: Path, update: dict[str, Any]) -> dict[str, Any]:
    """Read-modify-write the shared results file; other benchmark parts own the other keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        latest: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        latest = {}
    latest.update(update)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(latest, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return latest


def _per_streams(figures: dict[str, float]) -> str:
    return " / ".join(f"{figures[str(k)]:.2f}" for k in MANY_STREAMS) + " ms"


ENGINE_TABLE = Table(
    heading="## Engine on the development machine",
    rows=(
        Row("Engine, single stream", lambda r: f"{r['engine']['single_stream_tps']:.1f} tok/s"),
        Row(
            "Engine, aggregate at 1 / 2 / 4 / 8 streams",
            lambda r: " / ".join(f"{r['engine']['aggregate_tps'][str(k)]:.1f}" for k in STREAMS) + " tok/s",
        ),
        Row(
            "Bare low-level llama.cpp batched loop, 8 streams",
            lambda r: f"{r['engine']['bare_loop_8_tps']:.1f} tok/s",
        ),
        Row(
            "llama-cpp-python high-level `Llama.generate`",
            lambda r: f"{r['engine']['high_level_tps']:.1f} tok/s",
        ),
        Row(
            "`engine.speedup_8` (8 streams / 1 stream)",
            lambda r: f"{r['engine']['speedup_8']:.2f}",
            Target("engine.speedup_8", ">=", 1.4),
        ),
        Row(
            "`engine.batch_efficiency` (Engine / bare loop at 8)",
            lambda r: f"{r['engine']['batch_efficiency']:.2f}",
            Target("engine.batch_efficiency", ">=", 0.9),
        ),
        Row(
            "`engine.overhead_ratio` (Engine / `Llama.generate`, single stream)",
            lambda r: f"{r['engine']['overhead_ratio']:.2f}",
            Target("engine.overhead_ratio", ">=", 0.9),
        ),
        Row(
            "Engine's Python time per step at 8 / 16 / 32 streams, one llama.cpp sampler chain per sequence",
            lambda r: _per_streams(r["sampling"]["python_ms_per_step"]["chains"]),
        ),
        Row(
            "Same with the sequences sampled together (numpy)",
            lambda r: _per_streams(r["sampling"]["python_ms_per_step"]["batched"]),
        ),
        Row(
            "`sampling.sampling_gain_32` (Python time per step at 32 streams, chains / together)",
            lambda r: f"{r['sampling']['sampling_gain_32']:.2f}",
            Target("sampling.sampling_gain_32", ">=", 1.5),
        ),
        Row(
            "Next-turn time to first token, 2,000-token conversation, cold",
            lambda r: (
                f"{r['prefix']['ttft_cold_ms']:.1f} ms ({r['prefix']['tokens_cold']:,} tokens prefilled)"
            ),
        ),
        Row(
            "Same with prefix reuse",
            lambda r: (
                f"{r['prefix']['ttft_warm_ms']:.1f} ms ({r['prefix']['tokens_warm']:,} tokens prefilled)"
            ),
        ),
        Row(
            "`prefix.speedup`", lambda r: f"{r['prefix']['speedup']:.1f}×", Target("prefix.speedup", ">=", 5)
        ),
        Row(
            "Same conversation after 32 others went through the slots, cold",
            lambda r: (
                f"{r['prefix']['busy_ttft_cold_ms']:.1f} ms "
                f"({r['prefix']['busy_tokens_cold']:,} tokens prefilled)"
            ),
        ),
        Row(
            "Same with its window checkpoint restored",
            lambda r: (
                f"{r['prefix']['busy_ttft_reused_ms']:.1f} ms "
                f"({r['prefix']['busy_tokens_reused']:,} tokens prefilled)"
            ),
        ),
        Row(
            "`prefix.busy_speedup`",
            lambda r: f"{r['prefix']['busy_speedup']:.1f}×",
            Target("prefix.busy_speedup", ">=", 5),
        ),
    ),
)


def print_table(results: dict[str, Any]) -> None:
    """Print the figures a reader compares as docs/benchmarks.md's table, with the targets they must meet."""
    eng, pre = results["engine"], results["prefix"]
    print(
        f"Engine benchmark ({eng['model']}, {pre['model']}; {platform.machine()}, {eng['threads']} threads)"
    )
    print(ENGINE_TABLE.markdown(results))


def run_engine(quick: bool) -> dict[str, Any]:
    """Run the engine benchmarks and return the results keyed as in latest.json."""
    plan = QUICK if quick else FULL
    results: dict[str, Any] = {
        "engine": bench_throughput(plan),
        "sampling": bench_sampling(plan),
        "prefix": {**bench_prefix(plan), **bench_busy_prefix(plan)},
    }
    results["engine"]["llama_cpp_python"] = llama_cpp.__version__
    results["engine"]["system_info"] = llama_cpp.llama_print_system_info().decode().strip()
    results["engine"]["quick"] = quick
    results["engine_targets"] = ENGINE_TABLE.target_summary(results)
    return results
