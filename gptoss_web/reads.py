"""Reads that one action asks for more than once: a send reads the model's registry row for its fit check,
its quota and its queue, and the owner's profile and tools for the new conversation and for its fit check.

Inside `reads_once()`, each read marked `@read_once` runs once per arguments and is answered from memory
after that; outside it, every call reads. The services that check and queue a reply run in such a block, and a
caller that does more in the same action (creates the conversation first, checks the model itself) opens it
around them: a block inside another shares its memory. A block is one action in one thread, which
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
    """Answer each `@read_once` read from memory after its first call, until the outermost block ends."""
    outer = _memo.get()
    token = _memo.set(outer if outer is not None else {})
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
