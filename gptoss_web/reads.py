"""Reads that one action asks for more than once: a send reads the model's registry row for its fit check,
its quota and its queue, and the owner's profile and tools for the new conversation and for its fit check.

Inside `reads_once()`, each read marked `@read_once` runs once per arguments and is answered from memory
after that; outside it, every call reads. A block is one action in one thread (a send, an API request), which
writes none of what these functions read, so nothing it reads twice can have changed in between except by
another process, as it could just after the block anyway.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_memo: ContextVar[dict[tuple[Any, ...], Any] | None] = ContextVar("gptoss_reads", default=None)


@contextmanager
def reads_once() -> Iterator[None]:
    """Answer each `@read_once` read from memory after its first call, until the block ends."""
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def read_once[**P, R](read: Callable[P, R]) -> Callable[P, R]:
    """Mark *read* as one that a `reads_once()` block runs once per arguments (hashable ones: model instances
    hash by their primary key)."""

    @functools.wraps(read)
    def once(*args: P.args, **kwargs: P.kwargs) -> R:
        memo = _memo.get()
        if memo is None:
            return read(*args, **kwargs)
        key = (read, args, tuple(sorted(kwargs.items())))
        if key not in memo:
            memo[key] = read(*args, **kwargs)
        return memo[key]

    return once
