"""Reads: which models a user may pick, a worker's registry row, limits and usage, the workers' board."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat.models import Message
from gptoss_web.reads import read_once
from inference.models import Quota, ServedModel, UsageDay
from inference.runtime.catalog import queue_for_model
from inference.status import WorkerStatus, workers_list, workers_seen

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    daily_tokens: int | None  # None: no limit
    max_in_flight: int


@read_once
def served_model_list(*, user: User) -> list[ServedModel]:
    """Return the enabled models *user* may use, in menu order.

    Without any registry row the site serves GPTOSS_MODEL_NAME to everyone, as `make run` does.
    """
    if not ServedModel.objects.exists():
        return [ServedModel(name=settings.GPTOSS_MODEL_NAME)]
    group_ids = list(user.groups.values_list("pk", flat=True))
    return list(
        ServedModel.objects.filter(enabled=True)
        .filter(Q(groups__isnull=True) | Q(groups__in=group_ids))
        .distinct()
        .order_by("position", "name")
    )


def model_queue(name: str) -> str:
    """Return the Celery queue that serves the model *name*: its registry row's, else gpu.<name>."""
    row = served_model_get(name=name)
    return row.queue_name() if row is not None else queue_for_model(name)


@read_once
def served_model_get(*, name: str) -> ServedModel | None:
    """Return the registry row called *name*, if there is one."""
    return ServedModel.objects.filter(name=name).first()


@dataclass(frozen=True)
class ModelBudget:
    context: int  # tokens one conversation may use (prompt + answer)
    answer_tokens: int  # of which reserved for the answer


def model_budget_get(*, name: str) -> ModelBudget:
    """Return the context and answer budget *name* is served with: its registry row, else the environment.

    The worker fits its prompts with these; the web process checks a question against the same figures and
    holds an answer's budget against its owner's daily quota (no llama.cpp needed for either).
    """
    row = served_model_get(name=name)
    if row is not None:
        return ModelBudget(context=row.context, answer_tokens=row.answer_tokens())
    return ModelBudget(context=settings.GPTOSS_CONTEXT, answer_tokens=settings.GPTOSS_MAX_ANSWER_TOKENS)


def model_allowed(*, user: User, model_name: str) -> bool:
    return any(model.name == model_name for model in served_model_list(user=user))


def default_model_name(*, user: User) -> str:
    """Return the model a new conversation of *user* starts with: the served one if allowed, or the first."""
    names = [model.name for model in served_model_list(user=user)]
    if settings.GPTOSS_MODEL_NAME in names or not names:
        return settings.GPTOSS_MODEL_NAME
    return names[0]


def limits_get(*, user: User) -> Limits:
    """Return *user*'s limits: their own quota, else the most generous of their groups', else the defaults."""
    default_in_flight = settings.GPTOSS_MAX_IN_FLIGHT_PER_USER
    default_tokens = settings.GPTOSS_DAILY_TOKEN_LIMIT or None
    quotas = list(Quota.objects.filter(Q(user_id=user.pk) | Q(group__user=user.pk)))  # one query
    own = next((q for q in quotas if q.user_id == user.pk), None)
    if own is not None:
        return Limits(own.daily_tokens, own.max_in_flight or default_in_flight)
    group_quotas = [q for q in quotas if q.user_id is None]
    if not group_quotas:
        return Limits(default_tokens, default_in_flight)
    tokens = [q.daily_tokens for q in group_quotas]
    return Limits(
        daily_tokens=None if None in tokens else max(t for t in tokens if t is not None),
        max_in_flight=max(q.max_in_flight or default_in_flight for q in group_quotas),
    )


def tokens_used_today(*, user: User) -> int:
    """Return the tokens (reasoning + answer) *user* generated today, over all models."""
    return tokens_today(user=user).used


@dataclass(frozen=True)
class TokensToday:
    used: int  # generated today, by finished replies
    reserved: int  # held by replies queued or generating (and stopped ones their worker has not counted yet)


def tokens_today(*, user: User) -> TokensToday:
    """Return the tokens *user* generated today and those their replies in flight hold against the quota.

    Read in one statement: a reply settles (its usage recorded, its reservation ended) in one transaction, so
    it is counted once, as held or as used, never as neither.
    """
    used = (
        UsageDay.objects.filter(user_id=OuterRef("pk"), day=timezone.localdate())
        .values("user_id")
        .annotate(total=Sum(F("reasoning_tokens") + F("answer_tokens")))
        .values("total")
    )
    reserved = (
        Message.objects.filter(conversation__owner_id=OuterRef("pk"), reserved_tokens__gt=0)
        .values("conversation__owner_id")
        .annotate(total=Sum("reserved_tokens"))
        .values("total")
    )
    row = (
        User.objects.filter(pk=user.pk)
        .annotate(used=Coalesce(Subquery(used), Value(0)), reserved=Coalesce(Subquery(reserved), Value(0)))
        .values("used", "reserved")
        .get()
    )
    return TokensToday(used=int(row["used"]), reserved=int(row["reserved"]))


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
    """Return the models that must be served: the enabled registry rows, else GPTOSS_MODEL_NAME."""
    names = list(ServedModel.objects.filter(enabled=True).values_list("name", flat=True))
    return names or ([] if ServedModel.objects.exists() else [settings.GPTOSS_MODEL_NAME])


# The best a model's live workers can say, in order: one can answer, one is loading the model, one waits for
# PostgreSQL or Redis (it takes no task until they are back).
_SERVING_ORDER = ("ready", "loading", "waiting")


def serving_states() -> dict[str, str]:
    """Return, per model that a live GPU worker serves, "ready" (one can answer), "loading" or "waiting"."""
    states: dict[str, str] = {}
    for worker in workers_list():
        if worker.state not in _SERVING_ORDER:
            continue
        known = states.get(worker.model)
        if known is None or _SERVING_ORDER.index(worker.state) < _SERVING_ORDER.index(known):
            states[worker.model] = worker.state
    return states


def _duration(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} seconds"


def waiting_note(*, model_name: str, states: dict[str, str] | None = None) -> str:
    """Return what a reply queued for *model_name* shows beside its place: "" while a worker is ready for it,
    else that none is (and when the reply gives up), that one is still loading the model, or that it waits for
    its database."""
    if states is None:
        try:
            states = serving_states()
        except redis.RedisError as error:  # no heartbeats to read: say nothing rather than something wrong
            logger.warning("worker heartbeats not readable: %s", error)
            return ""
    state = states.get(model_name)
    if state == "ready":
        return ""
    if state == "loading":
        return (
            f"The GPU worker for {model_name} is still loading the model; this reply keeps its place in line."
        )
    wait = _duration(settings.GPTOSS_UNSERVED_TIMEOUT_S)
    if state == "waiting":
        return (
            f"The GPU worker for {model_name} cannot reach its database right now. This reply keeps its "
            f"place in line and fails if no worker can answer within {wait}."
        )
    return (
        f"No GPU worker is serving {model_name} right now. This reply keeps its place in line and fails "
        f"if none starts within {wait}."
    )


def worker_board() -> tuple[list[WorkerRow], list[ModelServing]]:
    """Return every worker seen lately (up or down) and, per enabled model, how many workers serve it."""
    live = {w.name: w for w in workers_list()}
    now = time.time()
    latest = {w.name: w for w in workers_seen()} | live
    rows = [WorkerRow(status=w, up=w.name in live, seconds_since=now - w.updated_at) for w in latest.values()]
    rows.sort(key=lambda r: (not r.up, r.status.model, r.status.name))
    serving = [
        ModelServing(
            name=name,
            queue=model_queue(name),
            workers_ready=sum(1 for w in live.values() if w.model == name and w.state == "ready"),
            workers_up=sum(1 for w in live.values() if w.model == name),
            workers_waiting=[
                f"{w.name}: {w.error}" for w in live.values() if w.model == name and w.state == "waiting"
            ],
        )
        for name in enabled_model_names()
    ]
    return rows, serving
