"""Random-weight gpt-oss models in any :class:`ModelShape`, up to the real 20b/120b sizes.

Speed depends on the shapes, not on the values, so such a file measures how fast the real model would
run. Tensors are generated as raw quantized bytes chunk by chunk and streamed to disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q

from gptoss_web.devtools.tinymodel.gguf_writer import ModelShape, _array_tensor, _nbytes, _Tensor, _write_gguf
from inference.runtime.tokens import VOCAB_SIZE

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
