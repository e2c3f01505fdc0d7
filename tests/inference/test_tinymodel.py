"""The generated gpt-oss test models load in real llama.cpp and follow their scripts exactly."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gptoss_web.devtools import tinymodel
from inference.runtime.tokens import O200K_SHA256

REPO = Path(__file__).resolve().parents[2]
VAR = REPO / "var"
SEEDS = (0, 1, 7)
STOPS = (tinymodel.RETURN, tinymodel.CALL)


@pytest.fixture(scope="module")
def encoding():  # type: ignore[no-untyped-def]
    """Load openai-harmony's gpt-oss encoding from the vocabulary built offline."""
    tinymodel.write_tiktoken_dir(VAR / "tiktoken")
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(VAR / "tiktoken")
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


@pytest.fixture(scope="module")
def llm() -> Iterator[object]:
    """Load the scripted model in llama.cpp once for the module."""
    import llama_cpp

    model = llama_cpp.Llama(str(tinymodel.tiny_model_path(VAR)), n_ctx=2048, verbose=False)
    yield model
    model.close()


def generate(llm: object, tokens: list[int], seed: int, limit: int = 200) -> list[int]:
    """Sample with gpt-oss's recommended settings (temperature 1.0) until a stop token."""
    llm.set_seed(seed)  # type: ignore[attr-defined]
    out: list[int] = []
    for tok in llm.generate(tokens, temp=1.0, top_p=1.0, min_p=0.01, top_k=0, reset=True):  # type: ignore[attr-defined]
        out.append(tok)
        if tok in STOPS or len(out) >= limit:
            break
    return out


def conversation(encoding, text: str, *, tools: bool, history: list | None = None):  # type: ignore[no-untyped-def]
    from openai_harmony import (
        Conversation,
        DeveloperContent,
        Message,
        ReasoningEffort,
        Role,
        SystemContent,
        ToolDescription,
    )

    system = (
        SystemContent.new()
        .with_reasoning_effort(ReasoningEffort.MEDIUM)
        .with_conversation_start_date("2025-06-01")
    )
    messages = []
    if tools:
        system = system.with_browser_tool().with_python_tool()
    messages.append(Message.from_role_and_content(Role.SYSTEM, system))
    if tools:
        developer = (
            DeveloperContent.new()
            .with_instructions("Answer briefly.")
            .with_function_tools(
                [
                    ToolDescription.new(
                        "get_weather",
                        "Get the current weather for a city",
                        parameters={
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    )
                ]
            )
        )
        messages.append(Message.from_role_and_content(Role.DEVELOPER, developer))
    messages += history or []
    messages.append(Message.from_role_and_content(Role.USER, text))
    return Conversation.from_messages(messages)


PROMPTS = {
    "plain": "Hello there, how are you today?",
    "reasoning": "think carefully about two plus two",
    "function": "What is the weather like in Paris?",
    "python": "python please: what is 6*7?",
    "search": "Please search the web for gpt-oss",
    "xss": "show me the xss corpus",
    "markdown": "Write some markdown",
    "endless": "Tell me an endless story",
}


def test_tiktoken_bytes_are_the_official_o200k_base_file() -> None:
    data = tinymodel.o200k_tiktoken_bytes()
    assert len(data) == 3_613_922
    assert hashlib.sha256(data).hexdigest() == O200K_SHA256


def test_gguf_declares_gpt_oss_with_mxfp4_experts_and_harmony_vocabulary() -> None:
    from gguf import GGMLQuantizationType, GGUFReader

    reader = GGUFReader(tinymodel.tiny_model_path(VAR))
    fields = reader.fields
    arch = fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "gpt-oss"
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == tinymodel.VOCAB_SIZE
    assert bytes(tokens.parts[tokens.data[200006]]).decode() == "<|start|>"
    assert bytes(tokens.parts[tokens.data[200012]]).decode() == "<|call|>"
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_gate_exps.weight"] == GGMLQuantizationType.MXFP4
    assert types["blk.1.ffn_down_exps.weight"] == GGMLQuantizationType.MXFP4
    assert "blk.0.attn_sinks.weight" in types


def test_llama_cpp_tokenizes_like_harmony(llm, encoding) -> None:  # type: ignore[no-untyped-def]
    text = "Hello world! Ünïcödé 【0†L1-L2】 def f(x): return x**2"
    ids = encoding.encode(text, allowed_special=set())
    assert llm.tokenize(text.encode(), add_bos=False, special=False) == ids
    assert llm.detokenize(ids).decode() == text


@pytest.mark.parametrize("tools", [False, True], ids=["no-tools", "tools"])
@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_every_script_comes_out_exactly_at_temperature_one(llm, encoding, name: str, tools: bool) -> None:  # type: ignore[no-untyped-def]
    from openai_harmony import Role

    script = tinymodel.SCRIPTS[name]
    prompt = encoding.render_conversation_for_completion(
        conversation(encoding, PROMPTS[name], tools=tools), Role.ASSISTANT
    )
    expected = list(script.first.tokens)
    if script.cycle:
        expected += list(script.cycle) * 25  # well past the 128-token sliding window
    for seed in SEEDS:
        out = generate(llm, prompt, seed, limit=len(expected))
        assert out == expected, f"seed {seed}: {encoding.decode(out)!r}"


def test_later_turn_without_trigger_answers_plainly(llm, encoding) -> None:  # type: ignore[no-untyped-def]
    from openai_harmony import Message, Role

    history = [
        Message.from_role_and_content(Role.USER, PROMPTS["reasoning"]),
        Message.from_role_and_content(Role.ASSISTANT, tinymodel.REASONING_ANSWER).with_channel("final"),
    ]
    conv = conversation(encoding, "thanks!", tools=True, history=history)
    prompt = encoding.render_conversation_for_completion(conv, Role.ASSISTANT)
    assert generate(llm, prompt, 3) == list(tinymodel.SCRIPTS["plain"].first.tokens)


@pytest.mark.parametrize("name", ["function", "python", "search"])
def test_tool_result_leads_to_the_scripted_final_answer(llm, encoding, name: str) -> None:  # type: ignore[no-untyped-def]
    from openai_harmony import Author, Conversation, Message, Role

    script = tinymodel.SCRIPTS[name]
    assert script.after_tool is not None
    conv = conversation(encoding, PROMPTS[name], tools=True)
    prompt = encoding.render_conversation_for_completion(conv, Role.ASSISTANT)
    call_tokens = generate(llm, prompt, 0)
    assert call_tokens == list(script.first.tokens)
    [call] = encoding.parse_messages_from_completion_tokens(call_tokens, Role.ASSISTANT)
    assert call.recipient == script.first.recipient
    assert call.content[0].text == script.first.call
    result = (
        Message.from_author_and_content(
            Author.new(Role.TOOL, call.recipient), '{"result": "42, sunny, gpt-oss"}'
        )
        .with_recipient("assistant")
        .with_channel(call.channel)
    )
    follow_up = Conversation.from_messages([*conv.messages, call, result])
    prompt2 = encoding.render_conversation_for_completion(follow_up, Role.ASSISTANT)
    for seed in SEEDS:
        out = generate(llm, prompt2, seed)
        assert out == list(script.after_tool.tokens), encoding.decode(out)
    [final] = encoding.parse_messages_from_completion_tokens(out, Role.ASSISTANT)
    assert final.content[0].text == script.after_tool.final


def test_scripts_decode_to_their_channel_texts(encoding) -> None:  # type: ignore[no-untyped-def]
    from openai_harmony import Role

    for name, script in tinymodel.SCRIPTS.items():
        if script.cycle:
            continue
        for turn in filter(None, (script.first, script.after_tool)):
            messages = encoding.parse_messages_from_completion_tokens(list(turn.tokens), Role.ASSISTANT)
            texts = {m.channel: m.content[0].text for m in messages}
            if turn.final:
                assert texts["final"] == turn.final, name
            if turn.analysis:
                assert texts["analysis"] == turn.analysis, name
            if turn.call:
                assert messages[-1].recipient == turn.recipient


def test_random_tiny_model_loads_and_generates(tmp_path: Path) -> None:
    import llama_cpp

    path = tinymodel.write_random_model(tmp_path / "random-tiny.gguf", tinymodel.SHAPES["tiny"], seed=3)
    model = llama_cpp.Llama(str(path), n_ctx=256, verbose=False)
    try:
        out = generate(model, [200006, 1428, 200008, 13225, 200007, 200006, 173781], 0, limit=16)
    finally:
        model.close()
    assert 1 <= len(out) <= 16
    assert all(0 <= t < tinymodel.VOCAB_SIZE for t in out)
