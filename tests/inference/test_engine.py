"""The engine on real llama.cpp: continuous batching, cancellation, prefix reuse, chunked prefill, errors.

Correctness checks use the deterministic scripted tiny model (its logits have wide margins, so batched
and single-sequence runs agree token for token); throughput-only checks use random weights.
"""

from __future__ import annotations

import ctypes
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import gguf
import jsonschema
import llama_cpp
import numpy as np
import pytest

from gptoss_web.devtools.tinymodel import SCRIPTS, SHAPES, WINDOW, tiny_model_path, write_random_model
from inference.runtime.engine import llama as engine_llama
from inference.runtime.engine.engine import Engine, Generation
from inference.runtime.engine.errors import EngineStoppedError, GrammarError, ModelLoadError, SettingsError
from inference.runtime.engine.grammar import function_call_grammar, json_answer_grammar
from inference.runtime.engine.settings import EngineSettings, Grammar, SamplingParams, engine_settings
from inference.runtime.harmony import STOP_TOKENS, PromptSpec, Turn, render_prompt
from inference.runtime.tokens import CALL, CHANNEL, MESSAGE, RETURN

STOPS = frozenset({RETURN, CALL})
GREEDY = SamplingParams(temperature=0.0)
NO_STOPS: frozenset[int] = frozenset()


PLAIN_REPLY = list(SCRIPTS["plain"].first.tokens)


def _prompt(user: str, history: list[Turn] | None = None) -> list[int]:
    spec = PromptSpec(
        effort="low",
        date="2026-01-01",
        browser=False,
        python=False,
        instructions="",
        functions=[],
        history=history or [],
        user=user,
    )
    return render_prompt(spec)


def _endless_reply(n: int) -> list[int]:
    """Return the first *n* tokens the scripted model writes for an 'endless' prompt."""
    script = SCRIPTS["endless"]
    out = list(script.first.tokens)
    while len(out) < n:
        out.extend(script.cycle)
    return out[:n]


@pytest.fixture(scope="module")
def scripted_model(tmp_path_factory: pytest.TempPathFactory, harmony_vocab_dir: Path) -> Path:
    return tiny_model_path(tmp_path_factory.mktemp("var"))


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("random") / "tiny-random.gguf"
    write_random_model(path, SHAPES["tiny"])
    return path


@pytest.fixture(scope="module")
def engine(scripted_model: Path) -> Iterator[Engine]:
    """An 8-slot engine shared by the tests that leave no idle caches behind."""
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=8)) as eng:
        yield eng


@pytest.fixture(scope="module")
def plain_reference() -> list[int]:
    """The scripted model's exact reply to a prompt without a trigger word, ending in <|return|>."""
    return PLAIN_REPLY


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


def _take(gen: Generation, n: int) -> list[int]:
    return [next(gen) for _ in range(n)]


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------

MOOD_SCHEMA = {
    "type": "object",
    "properties": {"mood": {"enum": ["happy", "sad"]}},
    "required": ["mood"],
    "additionalProperties": False,
}


def _text(engine: Engine, tokens: list[int]) -> str:
    vocab = llama_cpp.llama_model_get_vocab(engine._model)
    out = b""
    for token in tokens:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
        out += buf.raw[:n]
    return out.decode()


def test_a_json_schema_grammar_constrains_the_answer_and_leaves_the_reasoning_alone(engine: Engine) -> None:
    """Under the lazy grammar the analysis is the script's, and the answer is JSON valid for the schema."""
    prompt = _prompt("Please think")
    sampling = SamplingParams(temperature=0.0, grammar=json_answer_grammar(MOOD_SCHEMA))
    free = list(engine.submit(prompt, sampling=GREEDY, max_tokens=300, stop_tokens=STOPS))
    gen = engine.submit(prompt, sampling=sampling, max_tokens=300, stop_tokens=STOPS)
    tokens = list(gen)
    assert gen.stats.stop_reason == "stop_token" and gen.error is None
    assert tokens[-1] == RETURN
    # Everything up to the final channel's header (<|channel|>final<|message|>) is what the model writes
    # without a grammar.
    header = len(free) - free[::-1].index(CHANNEL) + 2
    assert free[header - 1] == MESSAGE
    assert tokens[:header] == free[:header]
    text = _text(engine, free[:header])
    assert "<|channel|>analysis<|message|>" + SCRIPTS["reasoning"].first.analysis in text
    answer = _text(engine, tokens[header:-1])
    jsonschema.validate(json.loads(answer), MOOD_SCHEMA)
    assert json.loads(answer)["mood"] in ("happy", "sad")


def test_a_forced_call_grammar_makes_the_reply_a_call_after_the_model_s_own_reasoning(engine: Engine) -> None:
    """tool_choice required: the model reasons as it would, then calls the function instead of answering."""
    grammar = function_call_grammar(["functions.set_mood"], MOOD_SCHEMA)
    gen = engine.submit(
        _prompt("Please think"), sampling=SamplingParams(temperature=0.0, grammar=grammar), max_tokens=300,
        stop_tokens=STOPS,
    )  # fmt: skip
    text = _text(engine, list(gen))
    assert gen.stats.stop_reason == "stop_token" and gen.error is None, text
    analysis = "<|channel|>analysis<|message|>" + SCRIPTS["reasoning"].first.analysis + "<|end|>"
    assert text.startswith(analysis + "<|start|>assistant<|channel|>commentary to=functions.set_mood"), text
    arguments = text.split("<|message|>")[-1].removesuffix("<|call|>")
    assert json.loads(arguments)["mood"] in ("happy", "sad")


def test_a_grammar_llama_cpp_cannot_parse_is_refused_at_submit(
    engine: Engine, plain_reference: list[int]
) -> None:
    broken = SamplingParams(temperature=0.0, grammar=Grammar(gbnf='root ::= "{" missing-rule'))
    with pytest.raises(GrammarError, match=r"llama\.cpp refused the grammar"):
        engine.submit(_prompt("Hello"), sampling=broken, max_tokens=10, stop_tokens=STOPS)
    with pytest.raises(GrammarError, match="JSON schema"):
        json_answer_grammar({"type": "object", "properties": {"a": {"$ref": "https://example.com/x"}}})
    hello = _prompt("Hello, how are you today?")
    again = engine.submit(hello, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS)
    assert list(again) == plain_reference


def test_plain_prompt_yields_the_scripted_reply_and_stops_on_return(
    engine: Engine, plain_reference: list[int]
) -> None:
    prompt = _prompt("Hello, how are you today?")
    gen = engine.submit(prompt, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS)
    tokens = list(gen)
    assert tokens == plain_reference
    assert tokens[-1] == RETURN
    stats = gen.stats
    assert stats.stop_reason == "stop_token"
    assert gen.error is None
    assert stats.prompt_tokens == len(prompt)
    assert stats.prefilled_tokens == len(prompt)
    assert stats.reused_tokens == 0
    assert stats.generated_tokens == len(tokens)
    assert stats.ttft_s is not None and stats.ttft_s > 0
    assert stats.decode_tps is not None and stats.decode_tps > 0


def test_the_opening_of_the_last_reply_is_drafted_and_the_model_samples_the_same_tokens_sooner(
    scripted_model: Path,
) -> None:
    """Each reply opens with harmony's header (`<|channel|>final<|message|>`) before any text: the engine
    decodes the last reply's opening with the next prompt's end, so every drafted token the model samples
    saves a step before the first text, and the tokens are exactly those of an engine without drafts."""
    settings = EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=2)
    asks = [
        ("Hello, how are you today?", "plain"),
        ("And how was your day?", "plain"),
        ("Please think", "reasoning"),
    ]
    with Engine(settings) as eng, Engine(replace(settings, draft_opening=False)) as undrafted:
        gens = [
            eng.submit(_prompt(text), sampling=GREEDY, max_tokens=200, stop_tokens=STOPS)
            for text, _ in asks[:1]
        ]
        assert list(gens[0]) == PLAIN_REPLY
        for text, _ in asks[1:]:
            gens.append(eng.submit(_prompt(text), sampling=GREEDY, max_tokens=200, stop_tokens=STOPS))
            list(gens[-1])
        for (text, script), gen in zip(asks, gens, strict=True):
            plain = list(undrafted.submit(_prompt(text), sampling=GREEDY, max_tokens=200, stop_tokens=STOPS))
            assert plain == list(SCRIPTS[script].first.tokens)
            assert gen.stats.stop_reason == "stop_token"
        assert eng.busy_slots() == 0

    first, second, third = gens
    assert first.stats.drafted_tokens == 0  # nothing to draft from yet
    # The second opens as the first did: its header and its first text token come in the prompt's own step.
    assert second.stats.drafted_tokens == 3
    steps = second.token_steps
    assert steps[:4] == [steps[0]] * 4 and steps[4] == steps[0] + 1
    assert second.stats.generated_tokens == len(PLAIN_REPLY)
    # The third reasons first: `<|channel|>` matches the draft, `analysis` does not; decoding goes on from it.
    assert third.stats.drafted_tokens == 1
    assert third.token_steps[:3] == [third.token_steps[0]] * 2 + [third.token_steps[0] + 1]


def test_a_drafted_opening_keeps_a_seeded_generation_s_tokens(random_model: Path) -> None:
    """Sampling at temperature, each drafted token is sampled from the model's own distribution with the
    sequence's own random stream, in order: a seeded generation gives the same tokens drafted or not."""
    settings = EngineSettings(model_path=random_model, n_ctx=1024, n_slots=1)
    seeded = SamplingParams(temperature=1.0, seed=1234)
    prompt = [random.Random(3).randrange(1000, 5000) for _ in range(24)]
    with Engine(replace(settings, draft_opening=False)) as undrafted:
        reference = list(undrafted.submit(prompt, sampling=seeded, max_tokens=12, stop_tokens=NO_STOPS))
    with Engine(settings) as eng:
        # The random model never writes harmony's header, so the opening is set as a reply's would be.
        eng._opening = tuple(reference[:4])
        drafted = eng.submit(prompt, sampling=seeded, max_tokens=12, stop_tokens=NO_STOPS)
        assert list(drafted) == reference
        assert drafted.stats.drafted_tokens == 4
        eng._opening = (
            reference[0],
            (reference[1] + 1) % 1000,
        )  # a draft the model leaves at its second token
        half = eng.submit(prompt, sampling=seeded, max_tokens=12, stop_tokens=NO_STOPS)
        assert list(half) == reference
        assert half.stats.drafted_tokens == 1


def test_max_tokens_stops_the_generation(engine: Engine) -> None:
    gen = engine.submit(_prompt("an endless story"), sampling=GREEDY, max_tokens=7, stop_tokens=STOPS)
    assert len(list(gen)) == 7
    assert gen.stats.stop_reason == "max_tokens"
    assert engine.busy_slots() == 0


def test_eight_concurrent_generations_cancel_one_and_a_ninth_takes_its_slot(engine: Engine) -> None:
    """Eight threads submit at once; one stream is cancelled mid-way and frees its slot for a queued ninth."""
    asks = ["Please think it over", "Show me some xss", "Write some markdown", "Tell an endless story"]
    expected = {
        asks[0]: list(SCRIPTS["reasoning"].first.tokens),
        asks[1]: list(SCRIPTS["xss"].first.tokens),
        asks[2]: list(SCRIPTS["markdown"].first.tokens),
        asks[3]: _endless_reply(100),
    }
    users = [asks[3], *asks, *asks[:3]]  # stream 0 (endless, unbounded) is the one to cancel
    prompts = [_prompt(user) for user in users]
    barrier = threading.Barrier(8)
    gens: list[Generation | None] = [None] * 8
    outputs: list[list[int]] = [[] for _ in range(8)]
    victim_started = threading.Event()

    def worker(i: int) -> None:
        barrier.wait()
        gen = engine.submit(
            prompts[i], sampling=GREEDY, max_tokens=100_000 if i == 0 else 100, stop_tokens=STOPS
        )
        gens[i] = gen
        for token in gen:
            outputs[i].append(token)
            if i == 0 and len(outputs[i]) == 3:
                victim_started.set()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    assert victim_started.wait(10)
    # With a drafted opening the victim's first step can bring its third token before the other threads
    # have submitted: the ninth comes once all eight hold a slot.
    _wait_for(lambda: engine.busy_slots() == 8)
    ninth = engine.submit(
        _prompt("Hello, how are you today?"), sampling=GREEDY, max_tokens=200, stop_tokens=STOPS
    )
    assert engine.busy_slots() == 8
    assert engine.queue_depth() == 1
    victim = gens[0]
    assert victim is not None
    victim.cancel()
    ninth_tokens = list(ninth)
    for t in threads:
        t.join(20)

    assert victim.stats.stop_reason == "cancelled"
    assert victim.stats.generated_tokens >= 3
    assert outputs[0] == _endless_reply(len(outputs[0]))
    assert ninth_tokens == PLAIN_REPLY
    assert ninth.stats.stop_reason == "stop_token"
    assert ninth.stats.queue_wait_s is not None and ninth.stats.queue_wait_s > 0
    assert ninth.token_steps[0] > victim.token_steps[-1]  # it started only once the victim's slot was freed
    for i in range(1, 8):
        assert outputs[i] == expected[users[i]], f"stream {i} ({users[i]!r}) changed"
    _wait_for(lambda: engine.busy_slots() == 0)


def test_a_ninth_request_waits_for_a_slot_then_runs(scripted_model: Path, plain_reference: list[int]) -> None:
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=2048, n_slots=8)) as eng:
        endless = _prompt("an endless story")
        running = [eng.submit(endless, sampling=GREEDY, max_tokens=60, stop_tokens=STOPS) for _ in range(8)]
        waiting = eng.submit(
            _prompt("Hello, how are you today?"), sampling=GREEDY, max_tokens=200, stop_tokens=STOPS
        )
        _wait_for(lambda: eng.busy_slots() == 8)
        assert eng.queue_depth() == 1
        tokens = list(waiting)
        assert all(len(list(g)) == 60 for g in running)
        assert tokens == plain_reference
        first_done = min(g.token_times[-1] for g in running)
        assert waiting.stats.queue_wait_s is not None
        assert waiting.submitted_at + waiting.stats.queue_wait_s >= first_done - 0.05
        assert waiting.token_steps[0] > max(g.token_steps[0] for g in running)


# --------------------------------------------------------------------------------------------------
# Prefix reuse
# --------------------------------------------------------------------------------------------------


def test_next_turn_reuses_the_cached_prefix_and_matches_a_cold_run(scripted_model: Path) -> None:
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=2)) as eng:
        user = "Hello, how are you today?"
        first = _prompt(user)
        reply = list(
            eng.submit(first, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS, cache_key="conv-1")
        )
        assert reply == PLAIN_REPLY
        assert eng.cached_keys() == ["conv-1"]
        second = _prompt(
            "And one more question?", history=[Turn(user=user, final=SCRIPTS["plain"].first.final)]
        )
        warm = eng.submit(second, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS, cache_key="conv-1")
        warm_tokens = list(warm)
        cold = eng.submit(second, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS)
        cold_tokens = list(cold)

    cached = [*first, *reply[:-1]]  # the last reply token is sampled, never decoded
    shared = next((i for i, (a, b) in enumerate(zip(cached, second, strict=False)) if a != b), len(cached))
    assert shared > len(first)  # harmony renders the finished turn as the model wrote it
    assert warm.stats.reused_tokens == shared
    assert warm.stats.prefilled_tokens == len(second) - warm.stats.reused_tokens
    assert cold.stats.reused_tokens == 0
    assert cold.stats.prefilled_tokens == len(second)
    assert warm_tokens == cold_tokens == PLAIN_REPLY


def test_idle_caches_are_evicted_least_recently_used_first(scripted_model: Path) -> None:
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=2)) as eng:
        prompts = {key: _prompt(f"{key}: hello there") for key in ("a", "b", "c")}

        def turn(key: str) -> Generation:
            gen = eng.submit(prompts[key], sampling=GREEDY, max_tokens=5, stop_tokens=STOPS, cache_key=key)
            list(gen)
            return gen

        turn("a")
        turn("b")
        assert eng.cached_keys() == ["a", "b"]
        assert turn("a").stats.reused_tokens == len(prompts["a"]) - 1  # "a" is now the most recent
        turn("c")  # both slots hold idle caches: the least recently used ("b") goes
        assert eng.cached_keys() == ["a", "c"]
        assert eng.busy_slots() == 0
        again_b = turn("b")
        assert again_b.stats.reused_tokens < len(prompts["b"]) - 1


# A long earlier turn, so that a conversation's cache reaches far beyond the sliding window.
WORDS = [
    "apple",
    "river",
    "mountain",
    "green",
    "quiet",
    "table",
    "window",
    "garden",
    "yellow",
    "morning",
    "paper",
    "stone",
    "bridge",
    "cloud",
]


def _words(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


LONG_HISTORY = [Turn(user=_words(500, seed=0), final="Noted.")]


def _answer_then_32_others(eng: Engine, prompt: list[int], *, key: str, max_tokens: int) -> list[int]:
    """Answer *prompt* under *key*, then put 32 other conversations through the engine's other slots.

    A reply that runs while the conversation is admitted, and ends after it, leaves free cells before the
    conversation's; the longer prompts after it fill those and go on over the conversation's sliding-window
    cells that its next token no longer sees (llama.cpp hands them out again), while its full-attention
    cells stay. This is how a busy server takes a cached conversation's window away.
    """
    earlier = eng.submit(
        _prompt("Tell me an endless story"), sampling=GREEDY, max_tokens=20, stop_tokens=STOPS
    )
    next(earlier)
    reply = list(eng.submit(prompt, sampling=GREEDY, max_tokens=max_tokens, stop_tokens=STOPS, cache_key=key))
    list(earlier)
    for wave in range(0, 32, 3):
        others = [
            eng.submit(
                _prompt(f"{i}: {_words(300, seed=i)}"), sampling=GREEDY, max_tokens=4, stop_tokens=STOPS
            )
            for i in range(wave, min(wave + 3, 32))
        ]
        for other in others:
            list(other)
    return reply


def _window_start(eng: Engine, key: str) -> int:
    """Return the first position whose sliding-window cells the idle cache of *key* still holds."""
    seq = next(slot.seq for slot in eng._slots if slot.cache_key == key)
    return int(llama_cpp.llama_memory_seq_pos_min(llama_cpp.llama_get_memory(eng._ctx), seq))


def test_a_next_turn_after_32_other_conversations_restores_the_window_and_matches_a_cold_run(
    scripted_model: Path,
) -> None:
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=4)) as eng:
        user = "Hello, how are you today?"
        first = _prompt(user, LONG_HISTORY)
        assert _answer_then_32_others(eng, first, key="conv-1", max_tokens=200) == PLAIN_REPLY
        assert _window_start(eng, "conv-1") > len(first) - WINDOW  # the window before the next turn is gone
        second = _prompt("And one more question?", [*LONG_HISTORY, Turn(user, SCRIPTS["plain"].first.final)])
        warm = eng.submit(second, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS, cache_key="conv-1")
        warm_tokens = list(warm)
        cold = eng.submit(second, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS)
        cold_tokens = list(cold)
        assert eng.restored_checkpoints == 1

    assert warm.stats.reused_tokens == len(
        first
    )  # up to the checkpoint, taken at the end of the first prompt
    assert warm.stats.prefilled_tokens == len(second) - len(first) < len(second) / 10
    assert cold.stats.prefilled_tokens == len(second)
    assert warm_tokens == cold_tokens == PLAIN_REPLY


def test_the_same_prompt_again_after_a_long_reply_and_32_others_resumes_at_the_checkpoint(
    scripted_model: Path,
) -> None:
    """The reply depends on the trigger word in the window before the prompt's end, which only the checkpoint
    still holds: restored wrongly or not at all, the model would write its plain answer."""
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=4)) as eng:
        story = _prompt("Tell me an endless story", LONG_HISTORY)
        reply = _answer_then_32_others(eng, story, key="story", max_tokens=WINDOW + 12)
        assert reply == _endless_reply(WINDOW + 12)
        assert _window_start(eng, "story") > len(story)  # the reply pushed the prompt's end out of the window
        again = eng.submit(story, sampling=GREEDY, max_tokens=20, stop_tokens=STOPS, cache_key="story")
        again_tokens = list(again)
        cold_tokens = list(eng.submit(story, sampling=GREEDY, max_tokens=20, stop_tokens=STOPS))
        assert eng.restored_checkpoints == 1

    assert again.stats.reused_tokens == len(story) - 1  # the last prompt token is evaluated again
    assert again.stats.prefilled_tokens == 1
    assert again_tokens == cold_tokens == _endless_reply(20)


def test_a_checkpoint_of_another_prefix_is_never_restored(scripted_model: Path) -> None:
    """An edited last message shares the cached tokens only up to the edit, before the checkpoint's window."""
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=4)) as eng:
        first = _prompt("Hello, how are you today?", LONG_HISTORY)
        _answer_then_32_others(eng, first, key="conv-1", max_tokens=200)
        edited = _prompt("Hello, how are you doing?", LONG_HISTORY)
        warm = eng.submit(edited, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS, cache_key="conv-1")
        warm_tokens = list(warm)
        cold_tokens = list(eng.submit(edited, sampling=GREEDY, max_tokens=200, stop_tokens=STOPS))
        assert eng.restored_checkpoints == 0

    assert warm.stats.reused_tokens == 0
    assert warm_tokens == cold_tokens == PLAIN_REPLY


def test_window_checkpoints_stay_within_their_byte_budget_dropping_the_least_recently_used(
    scripted_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prompts = {key: _prompt(f"{key}: hello there") for key in ("a", "b", "c")}

    def turn(eng: Engine, key: str) -> None:
        list(eng.submit(prompts[key], sampling=GREEDY, max_tokens=5, stop_tokens=STOPS, cache_key=key))

    with Engine(EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=4)) as eng:
        turn(eng, "a")
        one = eng.checkpoint_bytes()
    assert one > 0
    budget = 2 * one + one // 2
    settings = EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=4, checkpoint_bytes=budget)
    with caplog.at_level("INFO", logger="inference.runtime.engine.engine"), Engine(settings) as eng:
        turn(eng, "a")
        turn(eng, "b")
        assert eng.checkpointed_keys() == ["a", "b"]
        turn(eng, "c")  # three do not fit: the least recently used ("a") goes
        assert eng.checkpointed_keys() == ["b", "c"]
        assert eng.checkpoint_bytes() == 2 * one
        assert eng.cached_keys() == ["a", "b", "c"]  # the KV caches themselves stay
    assert any(
        "dropping the least recently used, of conversation a" in r.getMessage() for r in caplog.records
    )


# --------------------------------------------------------------------------------------------------
# Scheduling and limits
# --------------------------------------------------------------------------------------------------


def test_a_cache_whose_sliding_window_was_pruned_is_not_reused_and_answers_stay_right(
    scripted_model: Path,
) -> None:
    """Later conversations on slots that held long answers get the same answer as on a fresh engine.

    llama.cpp drops a sequence's sliding-window cells older than the window as it grows; reusing such a cache
    for a prompt that shares its beginning (every conversation shares the system message) would attend to
    cells that are gone. 32 answers of mixed lengths through 8 slots, admitted while others decode.
    """
    rng = random.Random(1)
    lengths = [rng.randint(32, 200) for _ in range(32)]
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=2048 * 8, n_slots=8)) as eng:
        gens = [
            eng.submit(
                _prompt(f"Tell me an endless story {i}"), sampling=SamplingParams(), max_tokens=n,
                stop_tokens=STOP_TOKENS, cache_key=f"conversation:{i}",
            )
            for i, n in enumerate(lengths)
        ]  # fmt: skip
        outputs = [list(g) for g in gens]
    wrong = [i for i, (out, n) in enumerate(zip(outputs, lengths, strict=True)) if out != _endless_reply(n)]
    assert wrong == []


def test_long_prompt_is_prefilled_in_chunks_while_another_stream_keeps_decoding(random_model: Path) -> None:
    settings = EngineSettings(model_path=random_model, n_ctx=4096, n_slots=2, prefill_chunk=64)
    with Engine(settings) as eng:
        stream = eng.submit([1000, 2000, 3000], sampling=GREEDY, max_tokens=100_000, stop_tokens=NO_STOPS)
        _take(stream, 5)
        long_prompt = [(7 * i + 11) % 199_000 for i in range(1000)]
        long = eng.submit(long_prompt, sampling=GREEDY, max_tokens=1, stop_tokens=NO_STOPS)
        assert len(list(long)) == 1
        stream.cancel()
        list(stream)

    chunks = -(-1000 // 64)
    first_step = long.token_steps[0]
    prefill_steps = set(range(first_step - chunks + 1, first_step + 1))
    assert long.stats.prefilled_tokens == 1000
    # The decoding stream got a token on every step of the long prompt's prefill.
    assert prefill_steps <= set(stream.token_steps)
    assert stream.stats.stop_reason == "cancelled"


def test_a_sequence_that_fills_its_context_stops_with_context_full(random_model: Path) -> None:
    with Engine(EngineSettings(model_path=random_model, n_ctx=256, n_slots=1)) as eng:
        prompt = list(range(100, 300))
        gen = eng.submit(prompt, sampling=GREEDY, max_tokens=10_000, stop_tokens=NO_STOPS)
        tokens = list(gen)
        assert gen.stats.stop_reason == "context_full"
        assert len(prompt) + len(tokens) - 1 == eng.n_ctx_per_seq


def test_when_the_shared_kv_cache_is_full_the_youngest_generation_stops(random_model: Path) -> None:
    with Engine(EngineSettings(model_path=random_model, n_ctx=256, n_slots=2)) as eng:
        older = eng.submit(list(range(100, 250)), sampling=GREEDY, max_tokens=20, stop_tokens=NO_STOPS)
        younger = eng.submit(list(range(300, 450)), sampling=GREEDY, max_tokens=20, stop_tokens=NO_STOPS)
        assert len(list(older)) == 20
        list(younger)
        assert older.stats.stop_reason == "max_tokens"
        assert younger.stats.stop_reason == "context_full"
        again = eng.submit([5, 6, 7], sampling=GREEDY, max_tokens=3, stop_tokens=NO_STOPS)
        assert len(list(again)) == 3


def test_cancelling_a_long_prefill_aborts_it_and_the_engine_keeps_serving(scripted_model: Path) -> None:
    settings = EngineSettings(model_path=scripted_model, n_ctx=4096, n_slots=2, prefill_chunk=2048)
    with Engine(settings) as eng:
        long = eng.submit(
            [(13 * i) % 199_000 for i in range(2000)], sampling=GREEDY, max_tokens=5, stop_tokens=STOPS
        )
        _wait_for(lambda: long in eng._batch_gens)  # its 2,000-token decode is running
        long.cancel()
        list(long)
        assert long.stats.stop_reason == "cancelled"
        if not llama_cpp.llama_supports_gpu_offload():  # llama.cpp honours the abort callback on CPU only
            assert eng.aborted_decodes == 1
            assert long.stats.prefilled_tokens == 0
        after = eng.submit(
            _prompt("Hello, how are you today?"), sampling=GREEDY, max_tokens=200, stop_tokens=STOPS
        )
        assert list(after) == PLAIN_REPLY
        assert eng.busy_slots() == 0


def test_a_failed_decode_fails_only_its_generations(scripted_model: Path) -> None:
    """Inject one llama_decode failure: the streams in that batch fail readably, later ones are served."""
    with Engine(EngineSettings(model_path=scripted_model, n_ctx=2048, n_slots=2)) as eng:
        batch = eng._batch
        assert batch is not None
        real_decode = batch.decode
        fail_next = threading.Event()

        def flaky_decode(ctx: object) -> int:
            if fail_next.is_set():
                fail_next.clear()
                return -3
            return real_decode(ctx)  # type: ignore[arg-type]

        batch.decode = flaky_decode  # type: ignore[method-assign]
        doomed = eng.submit(
            _prompt("Tell an endless story"), sampling=GREEDY, max_tokens=500, stop_tokens=STOPS
        )
        _take(doomed, 3)
        fail_next.set()
        list(doomed)
        assert doomed.stats.stop_reason == "error"
        assert doomed.error is not None and "llama_decode failed with code -3" in doomed.error
        after = eng.submit(
            _prompt("Hello, how are you today?"), sampling=GREEDY, max_tokens=200, stop_tokens=STOPS
        )
        assert list(after) == PLAIN_REPLY


def test_bad_requests_are_rejected_at_submit_and_the_engine_keeps_serving(engine: Engine) -> None:
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        engine.submit([1, 2, 10**7], sampling=GREEDY, max_tokens=5, stop_tokens=STOPS)
    with pytest.raises(ValueError, match="prompt is empty"):
        engine.submit([], sampling=GREEDY, max_tokens=5, stop_tokens=STOPS)
    with pytest.raises(ValueError, match="shorten the conversation"):
        engine.submit([1] * engine.n_ctx_per_seq, sampling=GREEDY, max_tokens=5, stop_tokens=STOPS)
    gen = engine.submit([1, 2, 3], sampling=GREEDY, max_tokens=2, stop_tokens=STOPS)
    assert len(list(gen)) == 2


def test_seeded_sampling_is_reproducible(random_model: Path) -> None:
    sampling = SamplingParams(temperature=1.0, top_p=0.9, top_k=40, seed=1234)
    with Engine(EngineSettings(model_path=random_model, n_ctx=1024, n_slots=1)) as eng:
        a = list(eng.submit([10, 20, 30], sampling=sampling, max_tokens=20, stop_tokens=NO_STOPS))
        b = list(eng.submit([10, 20, 30], sampling=sampling, max_tokens=20, stop_tokens=NO_STOPS))
    assert a == b


MIXED_SAMPLING = [
    GREEDY,
    SamplingParams(seed=1),
    SamplingParams(seed=2),
    SamplingParams(temperature=0.6, seed=3),
    SamplingParams(temperature=1.4, min_p=0.0, seed=4),
    SamplingParams(top_p=0.9, seed=5),
    SamplingParams(top_k=20, temperature=0.8, seed=6),
    SamplingParams(temperature=0.0, top_p=0.5),
]


def _mixed_batch(model: Path, *, batched: bool) -> list[list[int]]:
    """Run eight generations with different sampling at once; return each one's tokens."""
    settings = EngineSettings(model_path=model, n_ctx=2048, n_slots=8, batched_sampling=batched)
    with Engine(settings) as eng:
        gens = [
            eng.submit([11 + i, 22, 33], sampling=sampling, max_tokens=40, stop_tokens=NO_STOPS)
            for i, sampling in enumerate(MIXED_SAMPLING)
        ]
        outputs = [list(gen) for gen in gens]
        assert min(gen.token_steps[0] for gen in gens) == max(gen.token_steps[0] for gen in gens)
    return outputs


def test_batched_sampling_gives_every_sequence_the_tokens_llama_cpps_own_samplers_give(
    random_model: Path,
) -> None:
    """Eight sequences sampled together, each with its own temperature, top-p, top-k and seed, get token for
    token what each gets from its own llama.cpp sampler chain (the engine's sampling before batching)."""
    batched = _mixed_batch(random_model, batched=True)
    assert batched == _mixed_batch(random_model, batched=False)
    assert len({tuple(tokens) for tokens in batched}) == len(MIXED_SAMPLING)


def test_a_grammar_sequence_stays_constrained_among_batched_ones(engine: Engine) -> None:
    """A JSON-schema answer sampled by llama.cpp's grammar sampler, in the steps of seven free streams."""
    prompt = _prompt("Please think")
    free = [
        engine.submit(
            _prompt("Tell an endless story"),
            sampling=SamplingParams(seed=i),
            max_tokens=150,
            stop_tokens=STOPS,
        )
        for i in range(7)
    ]
    sampling = SamplingParams(temperature=1.0, seed=3, grammar=json_answer_grammar(MOOD_SCHEMA))
    constrained = engine.submit(prompt, sampling=sampling, max_tokens=300, stop_tokens=STOPS)
    tokens = list(constrained)
    for gen in free:
        list(gen)
    assert constrained.stats.stop_reason == "stop_token" and tokens[-1] == RETURN
    # Every one of its tokens was sampled in a step that sampled free streams too.
    assert set(constrained.token_steps) <= {step for gen in free for step in gen.token_steps}
    assert all(gen.stats.generated_tokens == 150 for gen in free)
    header = len(tokens) - tokens[::-1].index(CHANNEL) + 2
    answer = _text(engine, tokens[header:-1])
    jsonschema.validate(json.loads(answer), MOOD_SCHEMA)


def test_closing_fails_queued_work_and_refuses_new_work(random_model: Path) -> None:
    eng = Engine(EngineSettings(model_path=random_model, n_ctx=1024, n_slots=1))
    eng.start()
    running = eng.submit([1, 2, 3], sampling=GREEDY, max_tokens=100_000, stop_tokens=NO_STOPS)
    queued = eng.submit([4, 5, 6], sampling=GREEDY, max_tokens=5, stop_tokens=NO_STOPS)
    _take(running, 2)
    eng.close()
    list(running)
    list(queued)
    assert running.stats.stop_reason == "error"
    assert queued.stats.stop_reason == "error" and queued.error
    with pytest.raises(EngineStoppedError):
        eng.submit([1], sampling=GREEDY, max_tokens=1, stop_tokens=NO_STOPS)


# --------------------------------------------------------------------------------------------------
# Loading and settings
# --------------------------------------------------------------------------------------------------


def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    eng = Engine(EngineSettings(model_path=tmp_path / "nope.gguf", n_ctx=1024, n_slots=1))
    with pytest.raises(ModelLoadError, match="does not exist"):
        eng.start()


def test_a_model_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "llama.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError, match="'llama' model, not gpt-oss"):
        Engine(EngineSettings(model_path=path, n_ctx=1024, n_slots=1)).start()


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>404</html>")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        Engine(EngineSettings(model_path=path, n_ctx=1024, n_slots=1)).start()


def test_n_cpu_moe_beyond_the_layer_count_is_refused(random_model: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"n_cpu_moe=99 exceeds the model's \d+ layers"):
        Engine(EngineSettings(model_path=random_model, n_ctx=1024, n_slots=1, n_cpu_moe=99)).start()


def test_a_kv_cache_that_cannot_fit_is_refused(random_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_ram = [engine_llama.DeviceMemory(name="CPU", is_cpu=True, free=1 << 20, total=1 << 20)]
    monkeypatch.setattr(engine_llama, "device_memory", lambda: tiny_ram)
    with pytest.raises(ModelLoadError, match=r"lower n_ctx \(or use kv_type=q8_0\)"):
        Engine(EngineSettings(model_path=random_model, n_ctx=1 << 20, n_slots=4)).start()


AUTO_NAMES = {"slots": "GPTOSS_SLOTS", "context": "GPTOSS_CONTEXT"}
GIB = 1 << 30


def _one_slot_and_weights(model: Path, context: int) -> tuple[int, int]:
    """Return the KV cache bytes of one slot of *context* tokens, and the weights' bytes, as loaded."""
    with Engine(EngineSettings(model_path=model, n_ctx=context, n_slots=1)) as eng:
        assert eng._model is not None
        return engine_llama.kv_cache_bytes(eng._model, eng.settings), llama_cpp.llama_model_size(eng._model)


def _ram(monkeypatch: pytest.MonkeyPatch, available: int) -> None:
    """Make the machine report *available* bytes of RAM (ggml's CPU device says total; the kernel, this)."""
    cpu = [engine_llama.DeviceMemory(name="CPU", is_cpu=True, free=64 * GIB, total=64 * GIB)]
    monkeypatch.setattr(engine_llama, "device_memory", lambda: cpu)
    monkeypatch.setattr(engine_llama, "available_ram", lambda: available)


def test_auto_slots_fill_the_ram_left_after_loading_and_say_how(
    random_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """GPTOSS_SLOTS=auto on a CPU: the mapped weights and a reserve for llama.cpp's buffers come off the RAM
    available; what is left holds five slots' KV caches (and a half), so the engine runs five at once."""
    per_slot, weights = _one_slot_and_weights(random_model, 1024)
    _ram(monkeypatch, weights + GIB + per_slot * 11 // 2)
    settings = engine_settings(model_path=random_model, context=1024, slots=None, names=AUTO_NAMES)
    assert (settings.auto_slots, settings.n_slots, settings.n_ctx) == (True, 1, 1024)
    with caplog.at_level("INFO", logger="inference.runtime.engine.engine"), Engine(settings) as eng:
        assert (eng.n_slots, eng.settings.n_slots, eng.settings.n_ctx) == (5, 5, 5 * 1024)
        gens = [eng.submit([1, 2, 3], sampling=GREEDY, max_tokens=20, stop_tokens=NO_STOPS) for _ in range(6)]
        for gen in gens:
            list(gen)
        assert len({gen.token_steps[0] for gen in gens[:5]}) == 1  # five at once
        assert gens[5].token_steps[0] > gens[0].token_steps[-1]  # the sixth waited for a slot
    said = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("GPTOSS_SLOTS=auto:"))
    assert "of RAM free after loading the model" in said and "mapped weights" in said
    assert "less 1.00 GiB kept for llama.cpp's buffers" in said
    assert said.endswith(": 5 slots"), said


def test_auto_slots_stop_at_the_cap_and_refuse_when_not_one_fits(
    random_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_slot, weights = _one_slot_and_weights(random_model, 1024)
    settings = engine_settings(model_path=random_model, context=1024, slots=None, names=AUTO_NAMES)
    _ram(monkeypatch, weights + GIB + per_slot * 1000)
    with Engine(settings) as eng:
        assert eng.n_slots == 64
    _ram(monkeypatch, weights + GIB)
    with pytest.raises(ModelLoadError, match=r"GPTOSS_SLOTS=auto: .* too little for one slot's KV cache"):
        Engine(settings).start()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_ctx": 1 << 30}, "absurdly large"),
        ({"n_ctx": 64}, "too small"),
        ({"n_slots": 0}, "n_slots=0 is out of range"),
        ({"n_slots": 300}, "n_slots=300 is out of range"),
        ({"kv_type": "q3_k"}, "kv_type=q3_k is unknown"),
        ({"cpu_moe": True, "n_cpu_moe": 2}, "cpu_moe and n_cpu_moe are both set"),
        ({"n_cpu_moe": -1}, "n_cpu_moe=-1 is invalid"),
        ({"prefill_chunk": 0}, "prefill_chunk=0"),
        ({"n_ubatch": 4096}, "n_ubatch=4096 exceeds n_batch"),
    ],
)
def test_invalid_settings_are_refused_with_the_setting_named(
    overrides: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {"model_path": Path("m.gguf"), "n_ctx": 4096, "n_slots": 4}
    with pytest.raises(SettingsError, match=message):
        EngineSettings(**{**base, **overrides})  # type: ignore[arg-type]


def test_invalid_sampling_is_refused() -> None:
    with pytest.raises(SettingsError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(SettingsError, match="top_p"):
        SamplingParams(top_p=0)


# --------------------------------------------------------------------------------------------------
# CPU offload of experts
# --------------------------------------------------------------------------------------------------


def _overridden(load_log: list[str]) -> set[str]:
    return {line.split()[1] for line in load_log if "buffer type overridden to CPU" in line}


def test_n_cpu_moe_puts_the_experts_of_the_first_layers_on_cpu(random_model: Path) -> None:
    with Engine(EngineSettings(model_path=random_model, n_ctx=1024, n_slots=1, n_cpu_moe=1)) as eng:
        names = _overridden(eng.load_log)
        assert len(list(eng.submit([1, 2, 3], sampling=GREEDY, max_tokens=2, stop_tokens=NO_STOPS))) == 2
    assert {f"blk.0.ffn_{p}_exps.weight" for p in ("gate", "up", "down")} <= names
    assert not any(name.startswith("blk.1.") for name in names)


def test_cpu_moe_puts_every_expert_on_cpu(random_model: Path) -> None:
    with Engine(EngineSettings(model_path=random_model, n_ctx=1024, n_slots=1, cpu_moe=True)) as eng:
        names = _overridden(eng.load_log)
        layers = eng.n_layer
    for layer in range(layers):
        assert {f"blk.{layer}.ffn_{p}_exps.weight" for p in ("gate", "up", "down")} <= names
    assert all("_exps." in name for name in names)
