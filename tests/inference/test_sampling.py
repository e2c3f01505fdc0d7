"""Batched sampling (inference/runtime/engine/sampling.py) against llama.cpp's own sampler chains.

Each case samples a run of full-vocabulary logit rows both ways, one sampler per case kept across the rows, so
that the random streams, not only single draws, must agree.
"""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np
import pytest

from inference.runtime.engine import llama as engine_llama
from inference.runtime.engine.sampling import SequenceSampler, sample_rows
from inference.runtime.engine.settings import SamplingParams

VOCAB_SIZE = 201_088  # gpt-oss's vocabulary
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])

CASES = [
    SamplingParams(temperature=0.0),
    SamplingParams(seed=1),  # gpt-oss's recommended settings: min-p 0.01, temperature 1
    SamplingParams(seed=2),
    SamplingParams(temperature=0.7, seed=3),
    SamplingParams(temperature=1.3, min_p=0.0, seed=4),
    SamplingParams(top_p=0.9, seed=5),
    SamplingParams(top_k=40, seed=6),
    SamplingParams(temperature=0.8, top_k=40, top_p=0.8, seed=7),
    SamplingParams(top_p=0.95, min_p=0.0, seed=8),
]


def _llama_cpp_sample(chain: llama_cpp.llama_sampler_p, row: np.ndarray) -> int:
    """Sample *row* with a llama.cpp chain, as llama_sampler_sample does with a context's logits."""
    data = np.zeros(len(row), TOKEN_DATA)
    data["id"] = np.arange(len(row))
    data["logit"] = row
    array = llama_cpp.llama_token_data_array(
        data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
        size=len(row),
        selected=-1,
        sorted=False,
    )
    llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
    token = int(data["id"][array.selected])
    llama_cpp.llama_sampler_accept(chain, token)
    return token


def test_batched_sampling_draws_the_tokens_llama_cpp_draws_for_the_same_seed() -> None:
    """Greedy, seeded min-p, temperature, top-k and top-p rows, all in one batch, step after step."""
    rng = np.random.default_rng(2026)
    chains = [engine_llama.make_sampler(params, None) for params in CASES]
    samplers = [SequenceSampler.for_params(params) for params in CASES]
    ours, theirs = [], []
    try:
        for _ in range(25):
            # Spreads from flat (many candidates) to peaked (one or two), as a model's rows vary.
            block = (rng.standard_normal((len(CASES), VOCAB_SIZE)) * rng.uniform(1, 8)).astype(np.float32)
            ours.append(sample_rows(block, samplers))
            theirs.append([_llama_cpp_sample(chain, row) for chain, row in zip(chains, block, strict=True)])
    finally:
        for chain in chains:
            llama_cpp.llama_sampler_free(chain)
    assert ours == theirs


def test_rows_without_a_sampler_are_left_alone_and_the_logits_unchanged() -> None:
    rng = np.random.default_rng(7)
    block = rng.standard_normal((3, 1000)).astype(np.float32)
    before = block.copy()
    tokens = sample_rows(block, [None, SequenceSampler.for_params(SamplingParams(temperature=0.0)), None])
    assert tokens == [None, int(np.argmax(block[1])), None]
    assert np.array_equal(block, before)


@pytest.mark.parametrize("temperature", [0.2, 1.0, 3.0])
def test_each_row_keeps_its_own_temperature(temperature: float) -> None:
    """A row's spread follows its own temperature, whatever the temperatures of the rows beside it."""
    logits = np.log(np.array([0.5, 0.3, 0.2], dtype=np.float64)).astype(np.float32)
    block = np.tile(logits, (2, 1))
    hot = SequenceSampler.for_params(SamplingParams(temperature=temperature, min_p=0.0, seed=11))
    beside = SequenceSampler.for_params(SamplingParams(temperature=0.0))
    counts = np.zeros(3)
    for _ in range(4000):
        token, greedy = sample_rows(block, [hot, beside])
        assert greedy == 0
        assert token is not None
        counts[token] += 1
    expected = np.exp(np.log([0.5, 0.3, 0.2]) / temperature)
    expected /= expected.sum()
    assert np.allclose(counts / counts.sum(), expected, atol=0.03)
