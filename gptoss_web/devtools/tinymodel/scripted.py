"""The scripted tiny model: hand-set weights that answer each harmony prompt with a script of
:mod:`~gptoss_web.devtools.tinymodel.scripts` (how, see the package docstring)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q

from gptoss_web.devtools.tinymodel.gguf_writer import ModelShape, _array_tensor, _Tensor, _write_gguf
from gptoss_web.devtools.tinymodel.scripts import (
    _MODE_MARKERS,
    _MODES,
    _N_PHASES,
    _PHASE_MARKER_IDS,
    _PHASE_MARKERS,
    _TOOL_RESULT_PROMPTS,
    SCRIPTS,
    T_ASSISTANT,
    T_USER,
)
from inference.runtime.catalog import TINY_FILE, models_dir
from inference.runtime.tokens import END, MESSAGE, START, VOCAB_SIZE

logger = logging.getLogger(__name__)

#: Bump when the generated scripted model changes, so cached files are rebuilt.
#: The sliding window of layer 0; the mode and phase heads see markers this far back.
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
    path = models_dir(Path(var_dir)) / TINY_FILE
    if not path.exists():
        logger.info("building scripted tiny model at %s", path)
        write_tiny_model(path)
    return path
