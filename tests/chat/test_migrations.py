"""Migrations that rewrite stored data: what each leaves in the database, run on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("chat", "0012_organize")]
AFTER = [("chat", "0013_branches")]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    """Migrate to 0011 for the test; afterwards, forward to the newest migrations again."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        yield executor
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _migrate(to: list[tuple[str, str]]) -> Any:
    """Migrate to *to*; return the historical models' registry there."""
    executor = MigrationExecutor(connection)
    executor.migrate(to)
    return MigrationExecutor(connection).loader.project_state(to).apps


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_superseded_questions_and_answers_become_sibling_branches_without_loss(
    executor: MigrationExecutor,
) -> None:
    old = executor.loader.project_state(BEFORE).apps
    user = old.get_model("auth", "User").objects.create(username="alice")
    conversation_model, message_model = (
        old.get_model("chat", "Conversation"),
        old.get_model("chat", "Message"),
    )
    chat = conversation_model.objects.create(owner=user, model_name="tiny")
    api = conversation_model.objects.create(owner=user, model_name="tiny", from_api=True)
    empty = conversation_model.objects.create(owner=user, model_name="tiny")

    def message(conversation: Any, role: str, t: int, superseded: int | None = None, **fields: Any) -> int:
        row = message_model.objects.create(
            conversation=conversation,
            role=role,
            status="done",
            content=f"{role} at {t}",
            created_at=_at(t),
            superseded_at=_at(superseded) if superseded is not None else None,
            **fields,
        )
        return int(row.pk)

    q1 = message(chat, "user", 0)
    a1 = message(chat, "assistant", 1, reply_to_id=q1)
    q2 = message(chat, "user", 2, superseded=4)  # edited at 4 …
    a2 = message(chat, "assistant", 3, superseded=4, reply_to_id=q2)  # … with its answer
    q2b = message(chat, "user", 5)
    a2b = message(chat, "assistant", 6, superseded=7, reply_to_id=q2b)  # regenerated at 7
    a2c = message(chat, "assistant", 8, reply_to_id=q2b)
    q3 = message(chat, "user", 9)
    a3 = message(chat, "assistant", 10, reply_to_id=q3)
    # An API turn carried on with function outputs: two answers to one question, both on screen.
    q = message(api, "user", 0)
    r1 = message(api, "assistant", 1, reply_to_id=q)
    r2 = message(api, "assistant", 2, reply_to_id=q)
    count = message_model.objects.count()

    new = _migrate(AFTER)
    message_model, conversation_model = (
        new.get_model("chat", "Message"),
        new.get_model("chat", "Conversation"),
    )
    assert message_model.objects.count() == count
    parents = dict(message_model.objects.values_list("pk", "parent_id"))
    assert parents == {
        q1: None, a1: q1, q2: a1, a2: q2, q2b: a1, a2b: q2b, a2c: q2b, q3: a2c, a3: q3,
        q: None, r1: q, r2: r1,
    }  # fmt: skip
    leaves = dict(conversation_model.objects.values_list("pk", "current_leaf_id"))
    assert leaves == {chat.pk: a3, api.pk: r2, empty.pk: None}
    on_branch = set(message_model.objects.filter(on_branch=True).values_list("pk", flat=True))
    assert on_branch == {q1, a1, q2b, a2c, q3, a3, q, r1, r2}
    assert "superseded_at" not in {f.name for f in message_model._meta.get_fields()}

    # Back to 0011: what is off the branch on screen is superseded again; nothing else is.
    old = _migrate(BEFORE)
    superseded = old.get_model("chat", "Message").objects.filter(superseded_at__isnull=False)
    assert set(superseded.values_list("pk", flat=True)) == {q2, a2, a2b}
