"""The GPU worker's one Engine: configured from settings, loaded once when the Celery worker starts."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection

from chat.events import cancel_channel
from inference.models import ModelSource, ServedModel
from inference.runtime.catalog import model_path, queue_for_model
from inference.runtime.engine.engine import Engine, Generation
from inference.runtime.engine.settings import EngineSettings
from inference.runtime.vocab import configure_vocab
from inference.selectors import served_model_get
from inference.status import (
    HEARTBEAT_EVERY_S,
    RouteOffer,
    WorkerStatus,
    offer_remove,
    offer_write,
    redis_client,
    worker_queue,
)
from inference.worker.gpu import gpu_status
from inference.worker.heartbeat import Heartbeat, TokenMeter, host_memory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    model_name: str
    engine: EngineSettings
    context: int  # tokens one conversation may use (prompt + answer)
    max_answer_tokens: int
    queue: str  # where the web app sends this model's replies: its registry row's queue, else gpu.<name>


def worker_config() -> WorkerConfig:
    """Read this worker's model and engine settings; raise with advice if they cannot work.

    The model registry row named GPTOSS_MODEL_NAME (Django admin) wins; without one the GPTOSS_* variables
    apply, as under `make run`. GPTOSS_MODEL_PATH, when set, always names the file. An unreadable registry is
    an error (start_engine checks the database first): a worker must not serve on settings its admin replaced.
    """
    name = settings.GPTOSS_MODEL_NAME
    row = served_model_get(name=name)
    if row is not None:
        return _config_from_registry(row)
    path = model_path(
        settings.GPTOSS_MODEL, settings.GPTOSS_VAR_DIR, explicit_path=settings.GPTOSS_MODEL_PATH
    )
    # Read and checked with every setting when the process started; only the file was left to find.
    engine = replace(settings.GPTOSS_ENGINE, model_path=path)
    return WorkerConfig(
        model_name=name,
        engine=engine,
        context=settings.GPTOSS_CONTEXT,
        max_answer_tokens=settings.GPTOSS_MAX_ANSWER_TOKENS,
        queue=queue_for_model(name),
    )


def _config_from_registry(row: ServedModel) -> WorkerConfig:
    explicit = settings.GPTOSS_MODEL_PATH or (row.model_path if row.source == ModelSource.PATH else "")
    path = model_path(row.source, settings.GPTOSS_VAR_DIR, explicit_path=explicit)
    # The checkpoints live in the worker's RAM, which the operator's variable sizes, not the model's row.
    engine = replace(row.engine_settings(path), checkpoint_bytes=settings.GPTOSS_ENGINE.checkpoint_bytes)
    logger.info("model %s: settings from the model registry (%d slots)", row.name, row.slots)
    return WorkerConfig(
        model_name=row.name,
        engine=engine,
        context=row.context,
        max_answer_tokens=row.answer_tokens(),
        queue=row.queue_name(),
    )


class _State:
    engine: Engine | None = None
    config: WorkerConfig | None = None
    heartbeat: Heartbeat | None = None
    listener: CancelListener | None = None
    meter = TokenMeter()
    lock = threading.Lock()
    # Replies generating in this process, by message id, so Stop can reach them at once.
    generations: dict[int, Generation] = {}
    # Replies claimed by this process's tasks and not yet stored as finished (listed in the heartbeat).
    held: set[int] = set()
    # Of those, the ones whose generation has ended (their slot is free; only the final write is left).
    ending: set[int] = set()
    held_lock = threading.Lock()
    # What keeps this worker from taking tasks ("" when PostgreSQL and Redis answer).
    unavailable = ""
    # Set while the Celery consumer takes no task (the QueueGate step in inference/worker/gate.py).
    gate_closed = threading.Event()
    # Serializes the route offers, so an older one never overwrites a newer one in Redis.
    offer_lock = threading.Lock()


def start_engine() -> Engine:
    """Load the model once for this process (idempotent); raise EngineError/ModelUnavailable with advice.

    The worker's heartbeat says "loading" meanwhile, then "ready", or "failed" with the reason.
    """
    with _State.lock:
        if _State.engine is not None:
            return _State.engine
        status = WorkerStatus(name=worker_name(), model=settings.GPTOSS_MODEL_NAME, state="loading")
        _State.heartbeat = _State.heartbeat or Heartbeat(status, _sample).start()
        try:
            dependencies_check()
            engine, config = _load()
        except Exception as error:
            _State.heartbeat.status.state, _State.heartbeat.status.error = "failed", str(error)
            _State.heartbeat.beat()
            raise
        _State.engine, _State.config = engine, config
        _State.heartbeat.status.state = "ready"
        _State.heartbeat.beat()
        _State.listener = _State.listener or CancelListener().start()
        logger.info("model %s ready", config.model_name)
        return engine


def _load() -> tuple[Engine, WorkerConfig]:
    config = worker_config()
    configure_vocab(config.engine.model_path, Path(settings.GPTOSS_VAR_DIR) / "vocab")
    slots = "auto" if config.engine.auto_slots else config.engine.n_slots
    logger.info("loading %s from %s (%s slots)", config.model_name, config.engine.model_path, slots)
    engine = Engine(config.engine)
    engine.start()
    # With GPTOSS_SLOTS=auto the engine chose the slots (and so the task threads) once the model had loaded.
    return engine, replace(config, engine=engine.settings)


def _sample(status: WorkerStatus) -> None:
    """Fill in the live figures of this worker's heartbeat."""
    engine, config = _State.engine, _State.config
    if engine is not None and config is not None:
        status.slots_busy = engine.busy_slots()
        status.slots_total = config.engine.n_slots
        status.queue_depth = engine.queue_depth()
    with _State.held_lock:
        status.replies = sorted(_State.held)
    status.tokens_per_s_1m = round(_State.meter.rate(), 1)
    status.ram_used, status.ram_total = host_memory()
    status.gpu = gpu_status()
    offer_publish()


def offer_publish() -> None:
    """Tell the dispatcher this worker's free slots and the conversations whose cache it keeps (with every
    heartbeat, and at once when a reply is claimed or finished, so the dispatcher's choice is fresh)."""
    engine, config, heartbeat = _State.engine, _State.config, _State.heartbeat
    if engine is None or config is None:
        return
    ready = heartbeat is not None and heartbeat.status.state == "ready"
    with _State.offer_lock:
        with _State.held_lock:
            free = max(0, config.engine.n_slots - len(_State.held - _State.ending)) if ready else 0
        queue = worker_queue(config.queue, worker_name())
        offer = RouteOffer(name=worker_name(), queue=queue, free=free, cached=engine.cached_keys())
        try:
            offer_write(config.model_name, offer)
        except redis.RedisError as error:
            logger.warning("route offer not sent: %s", error)


def meter() -> TokenMeter:
    """Return the counter of tokens this worker generated (for its heartbeat)."""
    return _State.meter


@contextmanager
def tracking(message_id: int, generation: Generation) -> Iterator[None]:
    """Make *generation* reachable by Stop (through the cancel listener) while it runs."""
    _State.generations[message_id] = generation
    try:
        yield
    finally:
        _State.generations.pop(message_id, None)


@contextmanager
def holding(message_id: int) -> Iterator[None]:
    """List the claimed reply *message_id* in this worker's heartbeat until it is stored as finished."""
    with _State.held_lock:
        _State.held.add(message_id)
    offer_publish()
    try:
        yield
    finally:
        with _State.held_lock:
            _State.held.discard(message_id)
            _State.ending.discard(message_id)
        offer_publish()


def generation_ended(message_id: int) -> None:
    """Offer the slot of the held reply *message_id* again: its generation ended, the engine keeps the
    conversation's cache in it, and only the final write is left (which tells the browsers)."""
    with _State.held_lock:
        _State.ending.add(message_id)
    offer_publish()


def cancel(message_id: int) -> bool:
    """Stop the reply *message_id* if this process generates it; the slot is freed at the next step."""
    generation = _State.generations.get(message_id)
    if generation is None:
        return False
    logger.info("reply %s stopped", message_id)
    generation.cancel()
    return True


class CancelListener:
    """Listen on Redis for Stop and cancel the matching generation at once (reconnects after outages)."""

    def __init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cancel-listener", daemon=True)

    def start(self) -> CancelListener:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(cancel_channel())
                while True:
                    item = pubsub.get_message(timeout=1.0)
                    if item and item.get("type") == "message":
                        with suppress(ValueError):
                            cancel(int(item["data"]))
            except redis.RedisError as error:
                logger.warning("stop listener lost Redis (%s); retrying", error)
                time.sleep(1)


def slots() -> int:
    """Return the loaded engine's slots: the Celery worker runs one task thread per slot."""
    return current()[1].engine.n_slots


def queue() -> str:
    """Return the queue of the loaded model, which this worker consumes whatever its launcher passed."""
    return current()[1].queue


def own_queue() -> str:
    """Return this worker's own queue: the turns the dispatcher routes here, where their cache is."""
    return worker_queue(current()[1].queue, worker_name())


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def first_line(error: BaseException) -> str:
    """Return the first line of *error*'s message (psycopg adds hints on further lines), for log lines."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")


def database_problem(*, close: bool = False) -> str:
    """Return why this worker cannot use PostgreSQL ("" when it answers and holds the app's tables).

    With *close*, the probe's connection is closed after it, so the next probe opens a fresh one.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM chat_message LIMIT 1")
        return ""
    except DatabaseError as error:
        close = True  # a connection PostgreSQL dropped is of no further use
        return (
            f"PostgreSQL at DATABASE_URL={_masked(os.environ.get('DATABASE_URL', ''))} cannot be used: "
            f"{first_line(error)}. Set DATABASE_URL to the database the web app uses "
            "(postgres://user:password@host:5432/name), reachable from this machine and migrated "
            "(manage.py migrate)."
        )
    finally:
        if close:
            with suppress(Exception):
                connection.close()


def redis_problem() -> str:
    """Return why this worker cannot use Redis ("" when it answers)."""
    try:
        redis_client().ping()
        return ""
    except redis.RedisError as error:
        return (
            f"Redis at REDIS_URL={_masked(settings.REDIS_URL)} cannot be used: {first_line(error)}. "
            "Set REDIS_URL to the Redis the web app uses (redis://host:6379/0), reachable from this machine."
        )


def dependencies_check() -> None:
    """Raise ImproperlyConfigured, naming the variable to fix, unless PostgreSQL and Redis both answer."""
    problem = database_problem() or redis_problem()
    if problem:
        raise ImproperlyConfigured(problem)


GATE_WAIT_S = 5.0


def gate_changed(*, closed: bool) -> None:
    """Record that the Celery consumer stopped (or started again) taking tasks."""
    if closed:
        _State.gate_closed.set()
    else:
        _State.gate_closed.clear()


def taking_tasks() -> bool:
    """Return whether this worker may take tasks: False while it cannot reach PostgreSQL or Redis."""
    return not _State.unavailable


class DependencyWatch:
    """Check PostgreSQL and Redis every heartbeat; while either is gone the worker takes no task (the Celery
    consumer step in inference/worker/gate.py stops consuming) and its heartbeat says `waiting` and why."""

    def __init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dependency-watch", daemon=True)

    def start(self) -> DependencyWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            time.sleep(HEARTBEAT_EVERY_S)
            try:
                self.check()
            except Exception:
                logger.exception("dependency check failed")

    @staticmethod
    def check() -> None:
        problem = database_problem(close=True) or redis_problem()
        if problem == _State.unavailable:
            return
        heartbeat = _State.heartbeat
        if problem:
            logger.warning("not taking tasks until it is back: %s", problem)
        else:
            logger.warning("PostgreSQL and Redis answer again: taking tasks")
        _State.unavailable = problem
        if problem:
            # Say "waiting" once the consumer has stopped taking tasks, not before: whoever reads the
            # heartbeat may rely on it (a task sent in between would be taken, and wait for the database).
            _State.gate_closed.wait(GATE_WAIT_S)
        if heartbeat is not None:
            heartbeat.status.state, heartbeat.status.error = (
                ("waiting", problem) if problem else ("ready", "")
            )
            heartbeat.beat()


def current() -> tuple[Engine, WorkerConfig]:
    """Return this process's engine and its configuration, loading them on first use."""
    engine = start_engine()
    assert _State.config is not None
    return engine, _State.config


def stop_engine() -> None:
    with _State.lock:
        if _State.heartbeat is not None:
            _State.heartbeat.stop()
            _State.heartbeat = None
        if _State.config is not None:
            with suppress(redis.RedisError):
                offer_remove(_State.config.model_name, worker_name())
        if _State.engine is not None:
            _State.engine.close()
            _State.engine = None


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"
