"""Fixtures shared by all Django tests: users, logged-in clients, and a clean Redis prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.db import connections
from django.test import Client

from gptoss_web.devtools.tinymodel import tiny_model_path
from tests.factories import UserFactory


@pytest.fixture(scope="session", autouse=True)
def _tiny_model() -> None:
    """Build the scripted tiny model once (kept in var/models across runs): workers and engines serve it."""
    tiny_model_path(settings.GPTOSS_VAR_DIR)


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """Give each test a channel layer of its own.

    channels_redis's layer keeps the asyncio locks of the event loop that used it first, and each async test
    runs on a loop of its own: a socket's receive still pending when an earlier test's loop closed holds a
    lock the next test's sockets then wait on ("bound to a different event loop").
    """
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session", autouse=True)
def _drop_redis_keys() -> Iterator[None]:
    """Remove every Redis key this test run wrote (they all carry the run's private prefix)."""
    yield
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{settings.GPTOSS_REDIS_PREFIX}*", count=1000):
        client.delete(key)
    for key in client.scan_iter(match=f":1:{settings.GPTOSS_REDIS_PREFIX}*", count=1000):
        client.delete(key)


@pytest.fixture
def alice(db: None) -> object:
    return UserFactory(username="alice")


@pytest.fixture
def bob(db: None) -> object:
    return UserFactory(username="bob")


@pytest.fixture
def alice_client(alice: object) -> Client:
    client = Client()
    client.force_login(alice)  # type: ignore[arg-type]
    return client


@pytest.fixture
def bob_client(bob: object) -> Client:
    client = Client()
    client.force_login(bob)  # type: ignore[arg-type]
    return client


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
async def close_thread_connections() -> AsyncIterator[None]:
    """Close the database connection of sync_to_async's thread, so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()
