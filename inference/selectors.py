"""Reads: which models a user may pick, a worker's registry row, limits and usage, the workers' board."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import F, Q, Sum
from django.utils import timezone

from inference.models import Quota, ServedModel, UsageDay
from inference.status import WorkerStatus, workers_list, workers_seen


@dataclass(frozen=True)
class Limits:
    daily_tokens: int | None  # None: no limit
    max_in_flight: int


def served_model_list(*, user: User) -> list[ServedModel]:
    """Return the enabled models *user* may use, in menu order.

    Without any registry row the site serves GPTOSS_MODEL to everyone, as `make run` does.
    """
    if not ServedModel.objects.exists():
        return [ServedModel(name=settings.GPTOSS_MODEL)]
    group_ids = list(user.groups.values_list("pk", flat=True))
    return list(
        ServedModel.objects.filter(enabled=True)
        .filter(Q(groups__isnull=True) | Q(groups__in=group_ids))
        .distinct()
        .order_by("position", "name")
    )


def served_model_get(*, name: str) -> ServedModel | None:
    """Return the registry row called *name*, if there is one."""
    return ServedModel.objects.filter(name=name).first()


def model_allowed(*, user: User, model_name: str) -> bool:
    return any(model.name == model_name for model in served_model_list(user=user))


def default_model_name(*, user: User) -> str:
    """Return the model a new conversation of *user* starts with: GPTOSS_MODEL if allowed, else the first."""
    names = [model.name for model in served_model_list(user=user)]
    if settings.GPTOSS_MODEL in names or not names:
        return settings.GPTOSS_MODEL
    return names[0]


def limits_get(*, user: User) -> Limits:
    """Return *user*'s limits: their own quota, else the most generous of their groups', else the defaults."""
    default_in_flight = settings.GPTOSS_MAX_IN_FLIGHT_PER_USER
    default_tokens = settings.GPTOSS_DAILY_TOKEN_LIMIT or None
    own = Quota.objects.filter(user_id=user.pk).first()
    if own is not None:
        return Limits(own.daily_tokens, own.max_in_flight or default_in_flight)
    group_quotas = list(Quota.objects.filter(group__in=user.groups.all()))
    if not group_quotas:
        return Limits(default_tokens, default_in_flight)
    tokens = [q.daily_tokens for q in group_quotas]
    return Limits(
        daily_tokens=None if None in tokens else max(t for t in tokens if t is not None),
        max_in_flight=max(q.max_in_flight or default_in_flight for q in group_quotas),
    )


def tokens_used_today(*, user: User) -> int:
    """Return the tokens (reasoning + answer) *user* generated today, over all models."""
    total = UsageDay.objects.filter(user_id=user.pk, day=timezone.localdate()).aggregate(
        total=Sum(F("reasoning_tokens") + F("answer_tokens"))
    )["total"]
    return int(total or 0)


@dataclass(frozen=True)
class WorkerRow:
    status: WorkerStatus
    up: bool
    seconds_since: float  # since its last heartbeat


@dataclass(frozen=True)
class ModelServing:
    name: str
    queue: str
    workers_ready: int
    workers_up: int
    # Up but taking no task: PostgreSQL or Redis unreachable from them (their heartbeat says which).
    workers_waiting: list[str]


def enabled_model_names() -> list[str]:
    """Return the models that must be served: the enabled registry rows, else GPTOSS_MODEL."""
    names = list(ServedModel.objects.filter(enabled=True).values_list("name", flat=True))
    return names or ([] if ServedModel.objects.exists() else [settings.GPTOSS_MODEL])


def worker_board() -> tuple[list[WorkerRow], list[ModelServing]]:
    """Return every worker seen lately (up or down) and, per enabled model, how many workers serve it."""
    from inference.dispatch import queue_for_reply

    live = {w.name: w for w in workers_list()}
    now = time.time()
    latest = {w.name: w for w in workers_seen()} | live
    rows = [WorkerRow(status=w, up=w.name in live, seconds_since=now - w.updated_at) for w in latest.values()]
    rows.sort(key=lambda r: (not r.up, r.status.model, r.status.name))
    serving = [
        ModelServing(
            name=name,
            queue=queue_for_reply(name),
            workers_ready=sum(1 for w in live.values() if w.model == name and w.state == "ready"),
            workers_up=sum(1 for w in live.values() if w.model == name),
            workers_waiting=[
                f"{w.name}: {w.error}" for w in live.values() if w.model == name and w.state == "waiting"
            ],
        )
        for name in enabled_model_names()
    ]
    return rows, serving
