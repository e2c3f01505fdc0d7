"""Sample every sequence of a decode step together, with numpy, the way llama.cpp's own samplers would.

llama.cpp samples one sequence per call: `llama_sampler_sample` copies the 201,088 logits of the gpt-oss
vocabulary into an array of (id, logit, p) records and runs the chain over it, about 0.2 ms a sequence on the
engine thread, 6 ms a step at 32 slots. Here the whole step's logits are one (outputs × vocabulary) array
read in place: one pass finds every row's best token (greedy rows are done) and maximum, one more keeps each
sampled row's min-p candidates, and only those few go through temperature and the draw.

Each sequence keeps its own settings and random generator, and the arithmetic is llama.cpp's (0.3.36's
`llama-sampling.cpp`), step for step: the chain top-k, top-p, min-p, temperature, dist; float32 logits and
probabilities, the dist sampler's double-precision running sum, and its `std::mt19937` seeded with the
generation's seed, drawn as `std::uniform_real_distribution<double>` draws (two 32-bit outputs, low first).
So a seeded generation gives the same tokens as under llama.cpp's chain, and greedy ones its first best token.
Where llama.cpp leaves an order unspecified (equal logits inside a top-k or top-p sort) the lower token id
comes first here. Grammar-constrained generations stay on llama.cpp's sampler (`llama.make_sampler`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .settings import SamplingParams

__all__ = ["SequenceSampler", "sample_rows"]

F32 = np.float32
_TWO_32 = 4294967296.0
_TWO_64 = 18446744073709551616.0
_BELOW_ONE = float(np.nextafter(1.0, 0.0))
# llama.cpp's top-p sorts the best 256 candidates first and the whole vocabulary only when they fall short.
_TOP_P_FIRST_SORT = 256

Logits = npt.NDArray[np.float32]


@dataclass(slots=True)
class SequenceSampler:
    """One generation's sampling settings in llama.cpp's float32 terms, and its random generator."""

    greedy: bool
    temperature: np.float32
    top_k: int
    top_p: np.float32
    log_min_p: np.float32 | None  # logf(min_p), None when min-p is off
    rng: np.random.MT19937

    @classmethod
    def for_params(cls, sampling: SamplingParams) -> SequenceSampler:
        """Build the sampler llama.cpp's chain for *sampling* would be; without a seed, draw one."""
        seed = secrets.randbits(32) if sampling.seed is None else sampling.seed
        # RandomState's integer seeding is std::mt19937's (init_genrand); MT19937 then yields its raw outputs.
        key = np.random.RandomState(seed).get_state(legacy=False)["state"]["key"]
        rng = np.random.MT19937()
        rng.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}
        min_p = F32(sampling.min_p)
        return cls(
            greedy=sampling.greedy,
            temperature=F32(sampling.temperature),
            top_k=sampling.top_k,
            top_p=F32(sampling.top_p),
            log_min_p=F32(np.log(np.float64(min_p))) if min_p > 0 else None,
            rng=rng,
        )

    @property
    def filters_by_rank(self) -> bool:
        """Return whether top-k or top-p apply, which need the candidates sorted (a slower path)."""
        return self.top_k > 0 or bool(self.top_p < 1)

    def uniform(self) -> float:
        """Return the next `std::uniform_real_distribution<double>(0, 1)` draw of std::mt19937."""
        low, high = self.rng.random_raw(2)
        return min((float(low) + float(high) * _TWO_32) / _TWO_64, _BELOW_ONE)

    def draw(self, logits: Logits, ids: npt.NDArray[np.intp], is_sorted: bool) -> int:
        """Apply temperature and llama.cpp's dist sampler to the candidates *ids* with *logits*."""
        # llama.cpp 0.3.36 draws even for a single candidate: so does this, to stay on its random stream.
        scaled = logits / self.temperature
        top = scaled[0] if is_sorted else scaled.max()
        weights = _expf(scaled - top)
        running = np.cumsum(weights, dtype=np.float64)
        target = running[-1] * self.uniform()
        return int(ids[min(int(np.searchsorted(running, target)), len(ids) - 1)])


def _expf(x: Logits) -> Logits:
    """Return expf(x) as C's float exp rounds it (through double, not numpy's own float32 exp)."""
    return np.exp(x.astype(np.float64)).astype(F32)


def _by_logit(ids: npt.NDArray[np.intp], row: Logits) -> npt.NDArray[np.intp]:
    """Return *ids* ordered by logit, highest first, the lower id first among equals."""
    return ids[np.lexsort((ids, -row[ids]))]


def _best(row: Logits, k: int) -> npt.NDArray[np.intp]:
    """Return the indices of the *k* highest logits of *row*, highest first (the lower index among equals)."""
    if k >= len(row):
        return np.argsort(-row, kind="stable")
    return _by_logit(np.argpartition(-row, k - 1)[:k], row)


def _sample_ranked(row: Logits, sampler: SequenceSampler) -> int:
    """Sample one row whose chain has top-k or top-p, following llama.cpp's sorted paths."""
    ids = np.arange(len(row))
    logits = row
    is_sorted = False
    if sampler.top_k > 0:
        ids = _best(row, sampler.top_k)
        logits, is_sorted = row[ids], True
    if sampler.top_p < 1:
        top = logits[0] if is_sorted else logits.max()
        weights = _expf(logits - top)
        probs = weights / np.cumsum(weights, dtype=F32)[-1]
        order = np.arange(len(ids)) if is_sorted else _best(logits, _TOP_P_FIRST_SORT)
        # Sort more of the vocabulary only while the best ones sorted so far fall short of top-p, as llama.cpp
        # does (it goes from 256 to everything; the sums over the sorted prefix are the same either way).
        while len(order) < len(ids) and np.cumsum(probs[order], dtype=F32)[-1] < sampler.top_p:
            order = _best(logits, len(order) * 16)
        reached = np.flatnonzero(np.cumsum(probs[order], dtype=F32) >= sampler.top_p)
        keep = order[: reached[0] + 1] if len(reached) else order
        ids, logits, is_sorted = ids[keep], logits[keep], True
    if sampler.log_min_p is not None:
        floor = (logits[0] if is_sorted else logits.max()) + sampler.log_min_p
        kept = logits >= floor
        ids, logits = ids[kept], logits[kept]
    return sampler.draw(logits, ids, is_sorted)


def sample_rows(block: Logits, samplers: Sequence[SequenceSampler | None]) -> list[int | None]:
    """Return a token for each row of *block* (outputs × vocabulary) that has a sampler, None for the others.

    *block* is read, never written: llama.cpp's own samplers may read the same logits afterwards.
    """
    best = block.argmax(axis=1)
    tokens: list[int | None] = [None] * len(samplers)
    plain: list[int] = []  # rows sampled with min-p, temperature and dist only: the usual case
    for r, sampler in enumerate(samplers):
        if sampler is None:
            continue
        if sampler.greedy:
            tokens[r] = int(best[r])
        elif sampler.filters_by_rank:
            tokens[r] = _sample_ranked(block[r], sampler)
        else:
            plain.append(r)
    if not plain:
        return tokens
    rows = np.asarray(plain)
    top = block[rows, best[rows]]
    log_min_p = [samplers[r].log_min_p for r in plain]  # type: ignore[union-attr]
    floor = np.array([-np.inf if p is None else top[i] + p for i, p in enumerate(log_min_p)], dtype=F32)
    sub = np.ascontiguousarray(block if len(plain) == len(samplers) else block[rows])
    # flatnonzero, then row and column: 2-D nonzero is ten times slower over 201,088 columns.
    flat = np.flatnonzero(sub >= floor[:, None])
    row_of, ids = np.divmod(flat, sub.shape[1])
    candidates = sub.ravel()[flat]
    bounds = np.searchsorted(row_of, np.arange(len(plain) + 1))
    for i, r in enumerate(plain):
        sampler = samplers[r]
        assert sampler is not None
        start, end = bounds[i], bounds[i + 1]
        tokens[r] = sampler.draw(candidates[start:end], ids[start:end], is_sorted=False)
    return tokens
