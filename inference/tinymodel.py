"""Generate gpt-oss GGUF files for tests and benchmarks, without any download.

Two kinds of model come out of here, both with the real gpt-oss architecture and the real
201,088-token o200k_harmony vocabulary, so llama.cpp and openai-harmony treat them exactly like
the published checkpoints:

* the *scripted* tiny model (:func:`write_tiny_model`): hand-set weights that answer every harmony
  prompt with one of the fixed completions in :data:`SCRIPTS`, chosen by a trigger word in the last
  user message. Tests assert on these exact tokens.
* *random* models (:func:`write_random_model`): random weights in any :class:`ModelShape`, up to the
  real 20b/120b sizes, for speed measurements. They are written tensor by tensor, so memory stays
  bounded even for a 12 GB file.

How the scripted model works. Layer 0 (a sliding-window layer, 128 tokens) has three attention heads:

* a *previous-token* head whose score depends only on the relative position (RoPE), peaking at
  distance 1; it copies the previous token's code into the residual stream;
* a *mode* head that attends to the most recent "mode marker" in the window (a trigger word, or the
  ``user`` role token, which resets to the plain mode); RoPE adds a recency bias so the latest marker
  wins;
* a *phase* head that does the same for phase markers (``analysis``, ``comment``ary, the ``user``
  reset, and line markers inside the xss corpus).

The FFN (all experts identical, so routing is irrelevant) holds one unit per script step, firing on
the conjunction (mode, phase, previous token, current token) and writing the successor's code; the
output matrix turns that code into a large logit. Every decisive weight is 0 or ±1 in MXFP4 or F32,
so MXFP4 represents them exactly.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import logging
import math
import os
import struct
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from inference.runtime.gguf import byte_to_unicode
from inference.runtime.tokens import (
    CALL,
    CHANNEL,
    CONSTRAIN,
    END,
    ENDOFTEXT,
    MESSAGE,
    RETURN,
    START,
    STARTOFTEXT,
    VOCAB_SIZE,
    special_token_name,
)
from inference.runtime.tokens import ORDINARY_TOKEN_COUNT as N_BPE

logger = logging.getLogger(__name__)

#: Bump when the generated scripted model changes, so cached files are rebuilt.
GENERATOR_VERSION = 1

# Ordinary tokens the scripts and harmony headers are made of (ids in o200k_harmony).
T_USER = 1428
T_ASSISTANT = 173781
T_FINAL = 17196
T_ANALYSIS = 35644
T_COMMENT = 12606
T_ARY = 815

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------


def _quicktok_data_file(name: str) -> Path:
    """Locate a data file of quicktok-v1 without importing the package (its import is slow)."""
    spec = importlib.util.find_spec("quicktok")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("quicktok-v1 is not installed; `pip install quicktok-v1==0.4.0`")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / name
        if candidate.is_file():
            return candidate
    raise RuntimeError(f"quicktok-v1 ships no data/{name}")


@lru_cache(maxsize=1)
def o200k_ranks() -> tuple[bytes, ...]:
    """Return the o200k BPE tokens as bytes, indexed by rank (= token id)."""
    data = _quicktok_data_file("o200k.vocab").read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    offset = 4
    tokens: list[bytes | None] = [None] * count
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        offset += 2
        token = data[offset : offset + length]
        offset += length
        (rank,) = struct.unpack_from("<I", data, offset)
        offset += 4
        tokens[rank] = token
    if count != N_BPE or any(t is None for t in tokens):
        raise RuntimeError("quicktok's o200k.vocab is not the 199,998-token o200k_base vocabulary")
    return tuple(t for t in tokens if t is not None)


def o200k_tiktoken_bytes() -> bytes:
    """Return the official ``o200k_base.tiktoken`` file content (what openai-harmony loads offline)."""
    return b"".join(
        base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
        for rank, token in enumerate(o200k_ranks())
    )


def write_tiktoken_dir(directory: Path) -> Path:
    """Write ``o200k_base.tiktoken`` into *directory* (for ``TIKTOKEN_ENCODINGS_BASE``); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "o200k_base.tiktoken"
    if not target.exists():
        _atomic_write_bytes(target, o200k_tiktoken_bytes())
    return target


def _token_text(token: bytes) -> str:
    table = byte_to_unicode()
    return "".join(table[b] for b in token)


def _bpe_merges(ranks: Sequence[bytes]) -> list[str]:
    """Derive the BPE merges from the ranks, as llama.cpp's convert script does for tiktoken.

    Each multi-byte token is re-encoded with only the lower-ranked merges; the last merge applied
    is the pair it was built from.
    """
    rank_of = {token: rank for rank, token in enumerate(ranks)}
    merges: list[str] = []
    for rank, token in enumerate(ranks):
        if len(token) == 1:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_i = -1
            best_rank = rank
            for i in range(len(parts) - 1):
                r = rank_of.get(parts[i] + parts[i + 1])
                if r is not None and r < best_rank:
                    best_i, best_rank = i, r
            if best_i < 0:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        if len(parts) != 2:
            raise RuntimeError(f"token {rank} has no BPE merge path")
        merges.append(_token_text(parts[0]) + " " + _token_text(parts[1]))
    return merges


@lru_cache(maxsize=1)
def _vocab_arrays() -> tuple[list[str], list[int], list[str]]:
    """Return (tokens, token types, merges) for the GGUF tokenizer keys."""
    from gguf import TokenType

    ranks = o200k_ranks()
    tokens = [_token_text(t) for t in ranks] + [special_token_name(i) for i in range(N_BPE, VOCAB_SIZE)]
    types = [int(TokenType.NORMAL)] * N_BPE + [int(TokenType.CONTROL)] * (VOCAB_SIZE - N_BPE)
    return tokens, types, _bpe_merges(ranks)


# --------------------------------------------------------------------------------------------
# Shapes and GGUF writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """Hyper-parameters of a gpt-oss model."""

    n_layer: int
    n_embd: int
    n_expert: int
    n_expert_used: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff_exp: int
    n_ctx_train: int = 131072
    sliding_window: int = 128


SHAPES: dict[str, ModelShape] = {
    "20b": ModelShape(24, 2880, 32, 4, 64, 8, 64, 2880),
    "120b": ModelShape(36, 2880, 128, 4, 64, 8, 64, 2880),
    "bench": ModelShape(4, 512, 4, 2, 8, 2, 64, 512),
    "tiny": ModelShape(2, 64, 4, 2, 4, 1, 16, 64),
}


@dataclass
class _Tensor:
    """One tensor to write: its GGUF type, numpy shape (outermost first) and a byte producer."""

    name: str
    shape: tuple[int, ...]
    qtype: int
    nbytes: int
    produce: object = field(repr=False)  # Callable[[], Iterator[bytes | np.ndarray]]


def _nbytes(shape: Sequence[int], qtype: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
    count = int(np.prod(shape))
    return count // block * size


def _array_tensor(name: str, array: np.ndarray, qtype: int | None = None) -> _Tensor:
    """Wrap a float array, quantizing it to *qtype* (F32 when None)."""
    from gguf import GGMLQuantizationType, quants

    if qtype is None or qtype == GGMLQuantizationType.F32:
        data = np.ascontiguousarray(array, dtype=np.float32)
        qtype = int(GGMLQuantizationType.F32)
    elif qtype == GGMLQuantizationType.F16:
        data = np.ascontiguousarray(array, dtype=np.float16)
    else:
        data = quants.quantize(np.ascontiguousarray(array, dtype=np.float32), GGMLQuantizationType(qtype))
    return _Tensor(name, tuple(array.shape), int(qtype), data.nbytes, lambda: iter([data]))


def _write_gguf(path: Path, shape: ModelShape, tensors: Sequence[_Tensor], name: str) -> Path:
    """Write a gpt-oss GGUF to *path* atomically, streaming tensor data one tensor at a time."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, "gpt-oss")
        arch = "gpt-oss"
        writer.add_name(name)
        writer.add_context_length(shape.n_ctx_train)
        writer.add_embedding_length(shape.n_embd)
        writer.add_block_count(shape.n_layer)
        writer.add_feed_forward_length(shape.n_ff_exp)
        writer.add_uint32(f"{arch}.expert_feed_forward_length", shape.n_ff_exp)
        writer.add_expert_count(shape.n_expert)
        writer.add_expert_used_count(shape.n_expert_used)
        writer.add_head_count(shape.n_head)
        writer.add_head_count_kv(shape.n_head_kv)
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_sliding_window(shape.sliding_window)
        writer.add_rope_freq_base(150000.0)
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(32.0)
        writer.add_rope_scaling_orig_ctx_len(4096)
        tokens, types, merges = _vocab_arrays()
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-4o")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_bos_token_id(STARTOFTEXT)
        writer.add_eos_token_id(RETURN)
        writer.add_pad_token_id(ENDOFTEXT)
        writer.add_add_bos_token(False)
        writer.add_file_type(38)  # LLAMA_FTYPE_MOSTLY_MXFP4_MOE
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for t in tensors:
            raw = gguf.GGMLQuantizationType(t.qtype)
            if raw in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                dtype = np.float32 if raw == gguf.GGMLQuantizationType.F32 else np.float16
                writer.add_tensor_info(t.name, t.shape, np.dtype(dtype), t.nbytes)
            else:
                byte_shape = gguf.quants.quant_shape_to_byte_shape(t.shape, raw)
                writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), t.nbytes, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        fout = writer.fout[0]
        align = writer.data_alignment
        for t in tensors:
            fout.write(b"\0" * (-fout.tell() % align))
            written = 0
            for chunk in t.produce():  # type: ignore[operator]
                raw_bytes = chunk.tobytes() if isinstance(chunk, np.ndarray) else chunk
                fout.write(raw_bytes)
                written += len(raw_bytes)
            if written != t.nbytes:
                raise RuntimeError(f"{t.name}: wrote {written} bytes, expected {t.nbytes}")
        fout.write(b"\0" * (-fout.tell() % align))
        writer.close()
        tmp.chmod(0o644)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    Path(tmp_name).chmod(0o644)
    Path(tmp_name).replace(path)


# --------------------------------------------------------------------------------------------
# Random models
# --------------------------------------------------------------------------------------------

_CHUNK_ROWS = 8192


def _random_q8_0(shape: tuple[int, int], rng: np.random.Generator, scale: float) -> Iterator[np.ndarray]:
    """Yield random Q8_0 rows (f16 block scale + 32 int8) chunk by chunk."""
    rows, cols = shape
    nblocks = cols // 32
    scale_bytes = np.frombuffer(np.float16(scale / 127).tobytes(), dtype=np.uint8)
    for start in range(0, rows, _CHUNK_ROWS):
        n = min(_CHUNK_ROWS, rows - start)
        block = np.empty((n, nblocks, 34), dtype=np.uint8)
        block[..., :2] = scale_bytes
        block[..., 2:] = rng.integers(0, 256, size=(n, nblocks, 32), dtype=np.uint8)
        yield block


def _random_mxfp4(shape: tuple[int, ...], rng: np.random.Generator, exponent: int) -> Iterator[np.ndarray]:
    """Yield random MXFP4 blocks (E8M0 scale byte + 16 bytes of nibbles), one expert at a time."""
    n_expert, rows, cols = shape
    nblocks = cols // 32
    for _ in range(n_expert):
        for start in range(0, rows, _CHUNK_ROWS):
            n = min(_CHUNK_ROWS, rows - start)
            block = rng.integers(0, 256, size=(n, nblocks, 17), dtype=np.uint8)
            block[..., 0] = exponent
            yield block


def _random_float(
    name: str, shape: tuple[int, ...], rng: np.random.Generator, scale: float, qtype: int
) -> _Tensor:
    def produce() -> Iterator[np.ndarray]:
        dtype = np.float16 if qtype == 1 else np.float32
        yield (rng.standard_normal(shape, dtype=np.float32) * scale).astype(dtype)

    return _Tensor(name, shape, qtype, _nbytes(shape, qtype), produce)


def write_random_model(path: Path, shape: ModelShape, *, seed: int = 0) -> Path:
    """Write a gpt-oss GGUF with random weights of *shape* (MXFP4 experts, the real vocabulary).

    Speed depends on the shapes, not on the values, so such a file measures how fast the real
    model would run. Tensors are generated as raw quantized bytes and streamed to disk.
    """
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(seed)
    e, h, d = shape.n_embd, shape.n_head, shape.head_dim
    kv = shape.n_head_kv
    ff, nx = shape.n_ff_exp, shape.n_expert
    std = 1.0 / math.sqrt(e)
    tensors: list[_Tensor] = []

    def q8(name: str, rows: int) -> _Tensor:
        dims = (rows, e)
        return _Tensor(
            name, dims, int(Q.Q8_0), _nbytes(dims, int(Q.Q8_0)), lambda: _random_q8_0(dims, rng, 4 * std)
        )

    def mx(name: str, dims: tuple[int, int, int]) -> _Tensor:
        # exponent 121 -> step 2**-7: values up to 12 * 2**-7, a plausible weight range.
        return _Tensor(
            name, dims, int(Q.MXFP4), _nbytes(dims, int(Q.MXFP4)), lambda: _random_mxfp4(dims, rng, 121)
        )

    def ones(name: str, n: int) -> _Tensor:
        return _array_tensor(name, np.ones(n, dtype=np.float32))

    tensors.append(q8("token_embd.weight", VOCAB_SIZE))
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        tensors += [
            ones(p + "attn_norm.weight", e),
            _random_float(p + "attn_q.weight", (h * d, e), rng, std, int(Q.F16)),
            _random_float(p + "attn_q.bias", (h * d,), rng, 0.01, int(Q.F32)),
            _random_float(p + "attn_k.weight", (kv * d, e), rng, std, int(Q.F16)),
            _random_float(p + "attn_k.bias", (kv * d,), rng, 0.01, int(Q.F32)),
            _random_float(p + "attn_v.weight", (kv * d, e), rng, std, int(Q.F16)),
            _random_float(p + "attn_v.bias", (kv * d,), rng, 0.01, int(Q.F32)),
            _random_float(p + "attn_output.weight", (e, h * d), rng, 1.0 / math.sqrt(h * d), int(Q.F16)),
            _random_float(p + "attn_output.bias", (e,), rng, 0.01, int(Q.F32)),
            _random_float(p + "attn_sinks.weight", (h,), rng, 1.0, int(Q.F32)),
            ones(p + "post_attention_norm.weight", e),
            _random_float(p + "ffn_gate_inp.weight", (nx, e), rng, std, int(Q.F32)),
            _random_float(p + "ffn_gate_inp.bias", (nx,), rng, 0.01, int(Q.F32)),
            mx(p + "ffn_gate_exps.weight", (nx, ff, e)),
            _random_float(p + "ffn_gate_exps.bias", (nx, ff), rng, 0.01, int(Q.F32)),
            mx(p + "ffn_up_exps.weight", (nx, ff, e)),
            _random_float(p + "ffn_up_exps.bias", (nx, ff), rng, 0.01, int(Q.F32)),
            mx(p + "ffn_down_exps.weight", (nx, e, ff)),
            _random_float(p + "ffn_down_exps.bias", (nx, e), rng, 0.01, int(Q.F32)),
        ]
    tensors.append(ones("output_norm.weight", e))
    tensors.append(q8("output.weight", VOCAB_SIZE))
    return _write_gguf(path, shape, tensors, "gpt-oss random")


# --------------------------------------------------------------------------------------------
# The scripted model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptTurn:
    """One generation of the tiny model: the exact tokens it samples and the texts per channel."""

    tokens: tuple[int, ...]
    analysis: str = ""
    final: str = ""
    recipient: str | None = None
    call: str = ""


@dataclass(frozen=True)
class Script:
    """A scripted completion: *first* answers the prompt; *after_tool* answers the tool result."""

    name: str
    trigger: str | None
    trigger_ids: tuple[int, ...]
    first: ScriptTurn
    after_tool: ScriptTurn | None = None
    #: For "endless": the repeating tail of *first* (first.tokens holds one full cycle, unterminated).
    cycle: tuple[int, ...] = ()


def _final(text_ids: Sequence[int]) -> tuple[int, ...]:
    return (CHANNEL, T_FINAL, MESSAGE, *text_ids, RETURN)


PLAIN_ANSWER = "Hello! I am the tiny scripted test model, and this is my plain friendly answer."
_PLAIN_IDS = (
    13225,
    0,
    357,
    939,
    290,
    20049,
    184876,
    1746,
    2359,
    11,
    326,
    495,
    382,
    922,
    21402,
    11888,
    6052,
    13,
)
REASONING_ANALYSIS = "The user wants me to reason first. Two plus two makes four, so the reply is simple."
_REASONING_ANALYSIS_IDS = (
    976,
    1825,
    10648,
    668,
    316,
    5207,
    1577,
    13,
    13311,
    2932,
    1920,
    4787,
    4242,
    11,
    813,
    290,
    16794,
    382,
    4705,
    13,
)
REASONING_ANSWER = "After careful thought: the answer is four."
_REASONING_ANSWER_IDS = (8188, 25120, 4525, 25, 290, 6052, 382, 4242, 13)
WEATHER_CALL = '{"city":"Paris"}'
WEATHER_ANSWER = "It is sunny and 22 °C in Paris right now."
_WEATHER_ANSWER_IDS = (3206, 382, 46726, 326, 220, 1709, 23335, 34, 306, 12650, 1849, 1954, 13)
PYTHON_CALL = "print(6*7)"
PYTHON_ANSWER = "The code printed 42, which is six times seven."
_PYTHON_ANSWER_IDS = (976, 3490, 22774, 220, 4689, 11, 1118, 382, 7429, 4238, 12938, 13)
SEARCH_CALL = '{"query":"gpt-oss"}'
SEARCH_ANSWER = "According to the results, it is an open-weight model family 【0†L1-L2】."
_SEARCH_ANSWER_IDS = (
    20885,
    316,
    290,
    4376,
    11,
    480,
    382,
    448,
    2494,
    24650,
    2359,
    3502,
    16488,
    15,
    78115,
    43,
    16,
    9665,
    17,
    1813,
    13,
)
XSS_ANSWER = (
    "<script>window.__xss=1</script>\n"
    '<img src=x onerror="window.__xss=1">\n'
    "[link](javascript:window.__xss=1)\n"
    '<iframe src="javascript:window.__xss=1"></iframe>\n'
    "![t](https://evil.example/x.png)"
)
_XSS_IDS = (
    18263,
    29,
    10963,
    10210,
    87,
    1087,
    28,
    16,
    808,
    4822,
    523,
    50527,
    4537,
    56980,
    402,
    1544,
    580,
    10963,
    10210,
    87,
    1087,
    28,
    16,
    1540,
    58,
    3942,
    20614,
    33086,
    25,
    10963,
    10210,
    87,
    1087,
    28,
    16,
    446,
    27,
    51972,
    4537,
    580,
    33086,
    25,
    10963,
    10210,
    87,
    1087,
    28,
    16,
    4184,
    51972,
    523,
    46759,
    83,
    20614,
    4172,
    1684,
    158278,
    11344,
    22739,
    6820,
    8,
)
MARKDOWN_ANSWER = (
    "# Tiny report\n\nA short list:\n\n- alpha item\n- beta item\n\n"
    "| Model | Size |\n| --- | --- |\n| tiny | 40 MB |\n\n"
    '```python\nprint("hello")\n```'
)
_MARKDOWN_IDS = (
    2,
    74229,
    3019,
    279,
    32,
    4022,
    1562,
    1402,
    12,
    17406,
    2169,
    198,
    12,
    21306,
    2169,
    279,
    91,
    8186,
    1022,
    13568,
    15972,
    91,
    26691,
    1022,
    26691,
    15972,
    91,
    20049,
    1022,
    220,
    1723,
    21685,
    47459,
    168394,
    29010,
    198,
    1598,
    568,
    24912,
    1896,
    168394,
)
ENDLESS_HEAD = "Once upon a time,"
_ENDLESS_HEAD_IDS = (18049, 7557, 261, 1058, 11)
ENDLESS_CYCLE = " the story goes on and on, endless"
_ENDLESS_CYCLE_IDS = (290, 4869, 8805, 402, 326, 402, 11, 34768)

_WEATHER_CALL_TOKENS = (
    CHANNEL,
    T_COMMENT,
    T_ARY,
    316,
    28,
    44580,
    775,
    170154,
    220,
    CONSTRAIN,
    4108,
    MESSAGE,
    10848,
    17500,
    7534,
    72782,
    18583,
    CALL,
)
_PYTHON_CALL_TOKENS = (CHANNEL, T_ANALYSIS, 316, 28, 29010, 3490, MESSAGE, 1598, 7, 21, 9, 22, 8, CALL)
_SEARCH_CALL_TOKENS = (
    CHANNEL,
    T_ANALYSIS,
    316,
    28,
    46071,
    16718,
    3490,
    MESSAGE,
    10848,
    2975,
    7534,
    70,
    555,
    12,
    2907,
    18583,
    CALL,
)

SCRIPTS: dict[str, Script] = {
    "plain": Script("plain", None, (), ScriptTurn(_final(_PLAIN_IDS), final=PLAIN_ANSWER)),
    "reasoning": Script(
        "reasoning",
        "think",
        (49631, 2411),
        ScriptTurn(
            (
                CHANNEL,
                T_ANALYSIS,
                MESSAGE,
                *_REASONING_ANALYSIS_IDS,
                END,
                START,
                T_ASSISTANT,
                *_final(_REASONING_ANSWER_IDS),
            ),
            analysis=REASONING_ANALYSIS,
            final=REASONING_ANSWER,
        ),
    ),
    "function": Script(
        "function",
        "weather",
        (28393, 11122, 170154),
        ScriptTurn(_WEATHER_CALL_TOKENS, recipient="functions.get_weather", call=WEATHER_CALL),
        ScriptTurn(_final(_WEATHER_ANSWER_IDS), final=WEATHER_ANSWER),
    ),
    "python": Script(
        "python",
        "python",
        (29010, 22752),
        ScriptTurn(_PYTHON_CALL_TOKENS, recipient="python", call=PYTHON_CALL),
        ScriptTurn(_final(_PYTHON_ANSWER_IDS), final=PYTHON_ANSWER),
    ),
    "search": Script(
        "search",
        "search",
        (2624, 3684, 16718),
        ScriptTurn(_SEARCH_CALL_TOKENS, recipient="browser.search", call=SEARCH_CALL),
        ScriptTurn(_final(_SEARCH_ANSWER_IDS), final=SEARCH_ANSWER),
    ),
    "xss": Script("xss", "xss", (1087,), ScriptTurn(_final(_XSS_IDS), final=XSS_ANSWER)),
    "markdown": Script(
        "markdown", "markdown", (119670, 116713), ScriptTurn(_final(_MARKDOWN_IDS), final=MARKDOWN_ANSWER)
    ),
    "endless": Script(
        "endless",
        "endless",
        (34768, 2695),
        ScriptTurn(
            (CHANNEL, T_FINAL, MESSAGE, *_ENDLESS_HEAD_IDS, *_ENDLESS_CYCLE_IDS),
            final=ENDLESS_HEAD + ENDLESS_CYCLE,
        ),
        cycle=_ENDLESS_CYCLE_IDS,
    ),
}

#: Tool results as harmony renders them (header tokens + a short content), used to lay out the
#: continuation units. Only their markers matter; the content may be anything short.
_TOOL_RESULT_PROMPTS: dict[str, tuple[int, ...]] = {
    "function": (
        START,
        44580,
        775,
        170154,
        316,
        28,
        T_ASSISTANT,
        CHANNEL,
        T_COMMENT,
        T_ARY,
        MESSAGE,
        4689,
        END,
        START,
        T_ASSISTANT,
    ),
    "python": (
        START,
        29010,
        316,
        28,
        T_ASSISTANT,
        CHANNEL,
        T_ANALYSIS,
        MESSAGE,
        4689,
        END,
        START,
        T_ASSISTANT,
    ),
    "search": (
        START,
        46071,
        16718,
        316,
        28,
        T_ASSISTANT,
        CHANNEL,
        T_ANALYSIS,
        MESSAGE,
        4689,
        END,
        START,
        T_ASSISTANT,
    ),
}

#: Mode markers: token id -> mode index (1-based; 0 is the plain mode). ``user`` resets to plain.
_MODES = ["plain", "reasoning", "function", "python", "search", "xss", "markdown", "endless"]
_MODE_MARKERS: dict[int, int] = {
    tid: _MODES.index(name) for name, s in SCRIPTS.items() for tid in s.trigger_ids
}
_MODE_MARKERS[T_USER] = 0
#: Phase markers: token id -> phase index (0 = none). ``user`` resets.
_PHASE_MARKER_IDS = [T_ANALYSIS, T_COMMENT, 18263, 50527, 3942, 51972, 8186, 26691]
_PHASE_MARKERS: dict[int, int] = {tid: i + 1 for i, tid in enumerate(_PHASE_MARKER_IDS)}
_PHASE_MARKERS[T_USER] = 0
_N_PHASES = len(_PHASE_MARKER_IDS) + 1
WINDOW = 128


def _features(seq: Sequence[int], pos: int) -> tuple[int, int, int, int]:
    """Return (mode, phase, previous token, current token) as the model computes them at *pos*."""
    mode = phase = 0
    lo = max(0, pos - WINDOW + 1)
    found_mode = found_phase = False
    for p in range(pos, lo - 1, -1):
        tid = seq[p]
        if not found_mode and tid in _MODE_MARKERS:
            mode, found_mode = _MODE_MARKERS[tid], True
        if not found_phase and tid in _PHASE_MARKERS:
            phase, found_phase = _PHASE_MARKERS[tid], True
        if found_mode and found_phase:
            break
    return mode, phase, seq[pos - 1] if pos > 0 else -1, seq[pos]


def _script_transitions() -> dict[tuple[int, int, int, int], int]:
    """Lay out every script step as (features -> next token) and check that no two disagree."""
    table: dict[tuple[int, int, int, int], int] = {}

    def add(prompt: Sequence[int], generated: Sequence[int], name: str) -> None:
        seq = list(prompt) + list(generated)
        for k in range(len(generated)):
            pos = len(prompt) - 1 + k
            key = _features(seq, pos)
            nxt = seq[pos + 1]
            if table.setdefault(key, nxt) != nxt:
                raise RuntimeError(f"script {name!r} step {k}: {key} is ambiguous ({table[key]} vs {nxt})")

    for name, script in SCRIPTS.items():
        trigger = script.trigger_ids[:1]
        prompt = (START, T_USER, MESSAGE, 3575, *trigger, END, START, T_ASSISTANT)
        first = list(script.first.tokens)
        if script.cycle:
            first += list(script.cycle) * ((2 * WINDOW) // len(script.cycle) + 2)
        add(prompt, first, name)
        if script.after_tool is not None:
            add(prompt + script.first.tokens + _TOOL_RESULT_PROMPTS[name], script.after_tool.tokens, name)
    return table


def _code_pairs(n_dims: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(n_dims) for b in range(a + 1, n_dims)]


@dataclass(frozen=True)
class _Layout:
    """Where each feature lives in the residual stream of the scripted model."""

    n_embd: int = 128
    code_dims: int = 26

    @property
    def const(self) -> int:
        return 0

    @property
    def nomarker(self) -> int:
        return 1

    @property
    def marker0(self) -> int:  # mode markers (8 incl. user) then phase markers
        return 2

    @property
    def cur0(self) -> int:
        return 2 + len(_MODES) + len(_PHASE_MARKER_IDS)

    @property
    def prev0(self) -> int:
        return self.cur0 + self.code_dims

    @property
    def mode0(self) -> int:
        return self.prev0 + self.code_dims

    @property
    def phase0(self) -> int:
        return self.mode0 + len(_MODES)

    @property
    def succ0(self) -> int:
        return self.phase0 + _N_PHASES


def _yarn_theta(i: int, head_dim: int = 64) -> float:
    """Return the per-position angle llama.cpp's YaRN RoPE uses for rotary pair *i* of gpt-oss."""
    base, factor, orig = 150000.0, 32.0, 4096

    def corr(n_rot: float) -> float:
        return head_dim * math.log(orig / (n_rot * 2 * math.pi)) / (2 * math.log(base))

    low, high = max(0.0, math.floor(corr(32.0))), min(head_dim - 1.0, math.ceil(corr(1.0)))
    extrap = base ** (-2 * i / head_dim)
    y = (i - low) / max(0.001, high - low)
    ramp = 1 - min(1.0, max(0.0, y))
    return extrap / factor * (1 - ramp) + extrap * ramp


def _prev_head_weights() -> list[float]:
    """Return amplitudes for rotary pairs 0..7 making the score peak sharply at distance 1."""
    thetas = [_yarn_theta(i) for i in range(8)]
    deltas = [0, *range(2, WINDOW)]
    weights = np.ones(8)
    # Multiplicative-weights search for the amplitudes maximising the worst-case gap.
    gaps = np.array([[1 - math.cos((d - 1) * t) for t in thetas] for d in deltas])
    for _ in range(2000):
        g = gaps @ weights
        worst = int(np.argmin(g))
        weights *= np.exp(0.05 * gaps[worst] / (gaps[worst].max() + 1e-9))
        weights /= weights.sum()
    return list(weights)


def write_tiny_model(path: Path) -> Path:
    """Write the deterministic scripted tiny gpt-oss GGUF to *path* and return *path*."""
    from gguf import GGMLQuantizationType as Q

    table = _script_transitions()
    lay = _Layout()
    n, h, hd = lay.n_embd, 4, 64
    used = sorted({t for key in table for t in key[2:] if t >= 0} | set(table.values()))
    pairs = _code_pairs(lay.code_dims)[1:]  # pair (0, 1) is the code of every other token
    if len(used) > len(pairs):
        raise RuntimeError("too many script tokens for the code width")
    code = {tid: pairs[i] for i, tid in enumerate(used)}
    junk = (0, 1)

    # Embedding: const, marker (or nomarker), two code dims; all others zero.
    embd = np.zeros((VOCAB_SIZE, n), dtype=np.float32)
    embd[:, lay.const] = 1.0
    embd[:, lay.nomarker] = 1.0
    embd[:, lay.cur0 + junk[0]] = 1.0
    embd[:, lay.cur0 + junk[1]] = 1.0
    for tid, (a, b) in code.items():
        embd[tid, lay.cur0 : lay.cur0 + lay.code_dims] = 0.0
        embd[tid, lay.cur0 + a] = embd[tid, lay.cur0 + b] = 1.0
    mode_marker_dim = {tid: lay.marker0 + m for tid, m in _MODE_MARKERS.items()}
    phase_marker_dim = {tid: lay.marker0 + len(_MODES) + i for i, tid in enumerate(_PHASE_MARKER_IDS)}
    for tid, dim in {**mode_marker_dim, **phase_marker_dim}.items():
        embd[tid, lay.nomarker] = 0.0
        embd[tid, dim] = 1.0

    # Layer 0 attention. Norm weight makes every active input feature exactly 1.0.
    attn_norm0 = np.full(n, math.sqrt(4 / n), dtype=np.float32)
    wq = np.zeros((h * hd, n), np.float32)
    bq = np.zeros(h * hd, np.float32)
    wk = np.zeros((h * hd, n), np.float32)
    bk = np.zeros(h * hd, np.float32)
    wv = np.zeros((h * hd, n), np.float32)
    wo = np.zeros((n, h * hd), np.float32)
    bo = np.zeros(n, np.float32)
    sinks = np.array([-40.0, 12.0, 12.0, 40.0], np.float32)
    half = hd // 2
    scale = math.sqrt(hd)  # undo llama.cpp's 1/sqrt(head_dim)

    # Head 0: previous token. Score sum_i A_i cos((delta - 1) theta_i), bias-only q and k.
    amps = _prev_head_weights()
    peak = 60.0
    for i, amp in enumerate(amps):
        theta = _yarn_theta(i)
        weight = math.sqrt(peak * amp * scale)
        bq[i], bq[i + half] = weight * math.cos(-theta), weight * math.sin(-theta)
        bk[i] = weight
    for d in range(lay.code_dims):
        wv[d, lay.cur0 + d] = 1.0
        wo[lay.prev0 + d, d] = 1.0

    # Heads 1 (mode) and 2 (phase): most recent marker in the window wins.
    rec_pair, content_pair = 11, half - 1
    theta_r = _yarn_theta(rec_pair)
    phi = 0.5 * (math.pi - (WINDOW - 1) * theta_r)
    recency, content = 1400.0, 1500.0
    for head, markers, out0, n_out in (
        (1, mode_marker_dim, lay.mode0, len(_MODES)),
        (2, {**{T_USER: mode_marker_dim[T_USER]}, **phase_marker_dim}, lay.phase0, _N_PHASES),
    ):
        o = head * hd
        qr, qc = math.sqrt(recency * scale), math.sqrt(content * scale)
        bq[o + rec_pair] = qr
        bq[o + content_pair] = qc
        for tid, dim in markers.items():
            wk[o + rec_pair, dim] = qr * math.cos(-phi)
            wk[o + rec_pair + half, dim] = qr * math.sin(-phi)
            wk[o + content_pair, dim] = qc
            index = (_MODE_MARKERS if head == 1 else _PHASE_MARKERS)[tid]
            if index:
                wv[o + index, dim] = 1.0
        bo[out0] = 1.0  # the "none" feature, cancelled when a marker with a value is attended
        for index in range(1, n_out):
            wo[out0 + index, o + index] = 1.0
            wo[out0, o + index] = -1.0

    # Layer 0 FFN: one unit per (mode, phase, prev, cur) -> next.
    alpha = 12.0
    n_units = len(table)
    n_ff = max(64, -(-n_units // 32) * 32)
    gate = np.zeros((n_ff, n), np.float32)
    gate_b = np.full(n_ff, -100.0, np.float32)
    down = np.zeros((n, n_ff), np.float32)
    for u, ((mode, phase, prev, cur), nxt) in enumerate(sorted(table.items())):
        for d in code[cur]:
            gate[u, lay.cur0 + d] = 1.0
        for d in code[prev]:
            gate[u, lay.prev0 + d] = 1.0
        gate[u, lay.mode0 + mode] = 1.0
        gate[u, lay.phase0 + phase] = 1.0
        gate_b[u] = -alpha * 5.5
        for d in code[nxt]:
            down[lay.succ0 + d, u] = 1.0
    if lay.succ0 + lay.code_dims > n:
        raise RuntimeError("residual layout does not fit n_embd")
    post_norm0 = np.full(n, alpha * math.sqrt(8 / n), dtype=np.float32)

    out = np.zeros((VOCAB_SIZE, n), dtype=np.float32)
    for tid, (a, b) in code.items():
        out[tid, lay.succ0 + a] = out[tid, lay.succ0 + b] = 4.0

    n_expert = 4
    shape = ModelShape(2, n, n_expert, 2, h, h, hd, n_ff, sliding_window=WINDOW)
    tensors: list[_Tensor] = [_array_tensor("token_embd.weight", embd, int(Q.Q8_0))]
    zeros = np.zeros
    for layer in range(2):
        p = f"blk.{layer}."
        live = layer == 0
        experts = lambda m: np.repeat(m[None], n_expert, axis=0)  # noqa: E731
        tensors += [
            _array_tensor(p + "attn_norm.weight", attn_norm0 if live else np.ones(n, np.float32)),
            _array_tensor(p + "attn_q.weight", wq if live else _zeros_like(wq)),
            _array_tensor(p + "attn_q.bias", bq if live else _zeros_like(bq)),
            _array_tensor(p + "attn_k.weight", wk if live else _zeros_like(wk)),
            _array_tensor(p + "attn_k.bias", bk if live else _zeros_like(bk)),
            _array_tensor(p + "attn_v.weight", wv if live else _zeros_like(wv)),
            _array_tensor(p + "attn_v.bias", zeros(h * hd, np.float32)),
            _array_tensor(p + "attn_output.weight", wo if live else _zeros_like(wo)),
            _array_tensor(p + "attn_output.bias", bo if live else _zeros_like(bo)),
            _array_tensor(p + "attn_sinks.weight", sinks if live else zeros(h, np.float32)),
            _array_tensor(p + "post_attention_norm.weight", post_norm0 if live else np.ones(n, np.float32)),
            _array_tensor(p + "ffn_gate_inp.weight", zeros((n_expert, n), np.float32)),
            _array_tensor(p + "ffn_gate_inp.bias", zeros(n_expert, np.float32)),
            _array_tensor(
                p + "ffn_gate_exps.weight", experts(gate if live else _zeros_like(gate)), int(Q.MXFP4)
            ),
            _array_tensor(p + "ffn_gate_exps.bias", experts(gate_b if live else _zeros_like(gate_b))),
            _array_tensor(p + "ffn_up_exps.weight", experts(_zeros_like(gate)), int(Q.MXFP4)),
            _array_tensor(p + "ffn_up_exps.bias", experts(zeros(n_ff, np.float32))),
            _array_tensor(
                p + "ffn_down_exps.weight", experts(down if live else _zeros_like(down)), int(Q.MXFP4)
            ),
            _array_tensor(p + "ffn_down_exps.bias", experts(zeros(n, np.float32))),
        ]
    tensors.append(_array_tensor("output_norm.weight", np.ones(n, np.float32)))
    tensors.append(_array_tensor("output.weight", out, int(Q.Q8_0)))
    return _write_gguf(path, shape, tensors, "gpt-oss tiny scripted")


def _zeros_like(a: np.ndarray) -> np.ndarray:
    """Return zeros shaped like *a* (the inert second layer mirrors the live first one)."""
    return np.zeros_like(a)


def tiny_model_path(var_dir: Path) -> Path:
    """Return the cached scripted model under *var_dir*/models, building it if missing."""
    path = Path(var_dir) / "models" / f"tiny-gpt-oss-v{GENERATOR_VERSION}.gguf"
    if not path.exists():
        logger.info("building scripted tiny model at %s", path)
        write_tiny_model(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: ``tiny OUT.gguf`` or ``random --shape NAME [--seed N] OUT.gguf``."""
    parser = argparse.ArgumentParser(prog="python -m inference.tinymodel")
    sub = parser.add_subparsers(dest="kind", required=True)
    tiny = sub.add_parser("tiny", help="the scripted test model")
    tiny.add_argument("out", type=Path)
    rnd = sub.add_parser("random", help="random weights in a given shape")
    rnd.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    rnd.add_argument("--seed", type=int, default=0)
    rnd.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.kind == "tiny":
        write_tiny_model(args.out)
    else:
        write_random_model(args.out, SHAPES[args.shape], seed=args.seed)
    logger.info("wrote %s (%.1f MB)", args.out, args.out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
