"""Writing gpt-oss GGUF files: the model hyper-parameters (:class:`ModelShape`, :data:`SHAPES`) and a
writer that streams the tensors to disk one at a time, so memory stays bounded for any model size."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from gptoss_web.devtools.tinymodel.vocabulary import _vocab_arrays
from inference.runtime.tokens import ENDOFTEXT, RETURN, STARTOFTEXT


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
    produce: Callable[[], Iterable[bytes | np.ndarray]] = field(repr=False)


def _nbytes(shape: Sequence[int], qtype: int) -> int:
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]
    count = int(np.prod(shape))
    return count // block * size


def _array_tensor(name: str, array: np.ndarray, qtype: int | None = None) -> _Tensor:
    """Wrap a float array, quantizing it to *qtype* (F32 when None)."""
    if qtype is None or qtype == gguf.GGMLQuantizationType.F32:
        data = np.ascontiguousarray(array, dtype=np.float32)
        qtype = int(gguf.GGMLQuantizationType.F32)
    elif qtype == gguf.GGMLQuantizationType.F16:
        data = np.ascontiguousarray(array, dtype=np.float16)
    else:
        data = gguf.quants.quantize(
            np.ascontiguousarray(array, dtype=np.float32), gguf.GGMLQuantizationType(qtype)
        )
    return _Tensor(name, tuple(array.shape), int(qtype), data.nbytes, lambda: iter([data]))


def _write_gguf(path: Path, shape: ModelShape, tensors: Sequence[_Tensor], name: str) -> Path:
    """Write a gpt-oss GGUF to *path* atomically, streaming tensor data one tensor at a time."""
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
            for chunk in t.produce():
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
