"""API tests: the official `openai` client against real Daphne, a tiny-model GPU worker and the reaper."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gptoss_web.devtools.stack import Stack
from tests.live import live_stack, settle_replies


@pytest.fixture(scope="package")
def live(django_db_setup: None) -> Iterator[Stack]:
    """Daphne, a tiny-model GPU worker (2 slots) and the reaper, for the package's tests."""
    # Room for an "endless" answer to stream for a few seconds before its length limit, and for the prompt of
    # a coding agent (Codex CLI: about 10,000 tokens of instructions and tools).
    with live_stack(worker_env={"GPTOSS_CONTEXT": "16384", "GPTOSS_MAX_ANSWER_TOKENS": "2000"}) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _settle_replies(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop what a test left generating and let the worker finish writing before the database is emptied."""
    yield
    if "live" in request.fixturenames:
        settle_replies()
