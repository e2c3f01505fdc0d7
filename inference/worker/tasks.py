"""Celery tasks of the GPU worker: turn a queued reply into tokens, events and stored text."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial

from celery import shared_task
from celery.signals import worker_init, worker_shutdown
from celery.worker import WorkController
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from chat import events, selectors
from chat.events import StreamedText
from chat.models import ApiRequest, Message
from chat.services import api_requests, replies
from gptoss_web.heap import freeze_startup_objects
from inference.models import UsageDay
from inference.quotas import (
    reply_model_refusal,
)
from inference.runtime.engine.engine import Generation
from inference.runtime.engine.errors import GrammarError
from inference.runtime.harmony import (
    STOP_TOKENS,
    CommentaryDelta,
    FinalDelta,
    ParseError,
    ReasoningDelta,
    ReplyParser,
    ToolCall,
    ToolStep,
)
from inference.services import usage_record
from inference.tools.records import ToolCallRecord
from inference.tools.toolset import ToolResult, Toolset, tool_run
from inference.worker import process
from inference.worker.plans import PromptRefused, plan_for
from inference.worker.streaming import ReplyPublisher

logger = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0
LENGTH_NOTICE = "The answer stopped at its length limit."
QUOTA_NOTICE = "The answer stopped at what was left of your daily token quota."
# PostgreSQL gone (stopped, restarting, unreachable): the connection is discarded and the work retried.
DATABASE_DOWN = (OperationalError, InterfaceError)
# How long a task waits for PostgreSQL to come back before it gives up on a write: an outage of any
# realistic length. Meanwhile the worker takes no new task and its heartbeat says it is waiting.
DATABASE_PATIENCE_S = 24 * 3600.0
RETRY_MAX_S = 5.0
LOST_DATABASE = "The database was unreachable while writing this reply. The text so far is kept; press Retry."


@worker_init.connect
def _load_model_at_start(sender: object = None, **_: object) -> None:
    """Check PostgreSQL and Redis and load the model, before the worker takes any task; stop the worker with
    advice if it cannot.

    The pool is not built yet: its task threads are set to the engine's slots here, whatever a launcher
    passed as --concurrency, so a reply beyond the slots waits in the queue (showing its place), never
    inside the engine (showing "Answering…" without text).
    """
    try:
        process.start_engine()
    except Exception as error:
        logger.critical("the GPU worker cannot start: %s", error)
        raise SystemExit(f"The GPU worker cannot start: {error}") from error
    if isinstance(sender, WorkController):
        slots = process.slots()
        if sender.concurrency != slots:
            logger.info("%d task threads, one per engine slot (instead of %s)", slots, sender.concurrency)
        sender.concurrency = slots
        # Likewise its queue: a launcher's --queues derived from other variables (e.g. GPTOSS_MODEL where
        # GPTOSS_MODEL_PATH names the file) would leave its model's replies waiting in a queue nobody reads
        # while the heartbeat says the model is served, or answer another model's replies with this one.
        # Besides the model's shared queue, the worker's own: the next turns of the conversations whose cache
        # it keeps (inference/dispatch.py).
        queue, queues = process.queue(), sender.app.amqp.queues
        if set(queues.consume_from) != {queue}:
            logger.info("consuming %s, its model's queue (instead of %s)", queue, sorted(queues.consume_from))
        logger.info("consuming %s too: the turns routed to this worker", process.own_queue())
        queues.select([queue, process.own_queue()])
    process.DependencyWatch().start()
    freeze_startup_objects()  # the loaded model's and Django's objects stay out of the collections


def _discard_connection() -> None:
    """Close this thread's database connection, so the next query opens a new one."""
    with suppress(Exception):
        connection.close()


def _until_database[T](what: str, message_id: int, work: Callable[[], T]) -> T:
    """Run *work* (database reads and writes) until PostgreSQL answers, backing off between tries."""
    delay, deadline = 0.5, time.monotonic() + DATABASE_PATIENCE_S
    while True:
        try:
            return work()
        except DATABASE_DOWN as error:
            _discard_connection()
            if time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "reply %s: %s waits for the database (%s); again in %.1f s",
                message_id, what, process.first_line(error), delay,
            )  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


@worker_shutdown.connect
def _free_model(**_: object) -> None:
    process.stop_engine()


@dataclass
class ReplyState:
    """What a reply has produced so far, across the tool calls of its turn."""

    # What the stream events published so far add up to (the publisher folds each one in).
    text: StreamedText = field(default_factory=events.streamed_text)
    steps: list[ToolStep] = field(default_factory=list)
    # Reasoning written in the current generation, before its tool call (goes back into the prompt).
    segment_reasoning: str = ""
    prompt_tokens: int = 0
    reused_tokens: int = 0  # of the last generation's prompt, taken from the engine's cache (for the log)
    reasoning_tokens: int = 0
    answer_tokens: int = 0
    ttft_ms: int | None = None
    # Celery queue (created → claimed) plus the engine's wait for a free slot.
    queue_wait_ms: int | None = None
    tokens_per_second: float | None = None
    last_flush: float = field(default_factory=time.monotonic)
    # What the user is told when the answer runs out of tokens.
    cut_notice: str = LENGTH_NOTICE
    failed_saves: int = 0
    # Whether the replies still queued were told their new places (after this one's first text).
    queue_told: bool = False

    @property
    def content(self) -> str:
        return self.text["content"]

    @property
    def reasoning(self) -> str:
        return self.text["reasoning"]

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return self.text["tool_calls"]

    def save(self, message: Message, publisher: ReplyPublisher) -> bool:
        """Store the text so far; return False when the reply stopped streaming (Stop, deleted, reaped).

        While PostgreSQL is down the write is skipped and tried again later, backing off: the reply goes on
        streaming, the text is kept here and in the reply's Redis list, and the final write stores all of it.
        """
        self.last_flush = time.monotonic()
        seq = publisher.stored()  # first: it folds the pending text in
        try:
            stored = replies.reply_save_progress(
                message=message,
                content=self.content,
                reasoning=self.reasoning,
                tool_calls=self.tool_calls,
                seq=seq,
            )
        except DATABASE_DOWN as error:
            _discard_connection()
            self.failed_saves += 1
            self.last_flush += min(2.0**self.failed_saves, 30.0)  # the next try comes later
            logger.warning(
                "reply %s: text not stored, the database is down (%s)", message.pk, process.first_line(error)
            )
            return True
        self.failed_saves = 0
        return stored


@dataclass(frozen=True)
class ReplyOutcome:
    """How a reply's turn ended: its final status, the error the user reads, and whether Retry could help
    (not when the model is refused or the question alone does not fit)."""

    status: str
    error: str = ""
    retryable: bool = True
    finish: str = "stop"  # why it ended, in OpenAI's words, for an API request: stop, length, tool_calls


@dataclass(frozen=True)
class StreamOutcome:
    """How one generation of the turn ended: a tool call to run next (status `done`), or the turn's end."""

    status: str
    error: str = ""
    call: ToolCall | None = None
    finish: str = "stop"


# The name from before the task moved into inference/worker/: tasks queued by an older release still run.
@shared_task(name="inference.tasks.generate_reply_task", bind=True, ignore_result=True, acks_late=False)
def generate_reply_task(self: object, message_id: int, routed: bool = False) -> None:
    """Generate the oldest queued reply of *message_id*'s model (see reply_start; a *routed* task, sent to
    this worker's own queue, its own reply first); none left: do nothing.

    A database outage delays the task but loses nothing: the claim waits for PostgreSQL, the progress writes
    are skipped while it is down, and the final write waits for it (the reply stays listed in the worker's
    heartbeat meanwhile, so the reaper leaves it be).
    """
    task_id = getattr(getattr(self, "request", None), "id", None) or ""
    name = process.worker_name()
    message = _until_database(
        "the claim",
        message_id,
        lambda: replies.reply_start(message_id=message_id, task_id=task_id, worker=name, routed=routed),
    )
    if message is None:
        return
    with process.holding(message.pk):
        _generate_and_finish(message, task_id)


def _generate_and_finish(message: Message, task_id: str) -> None:
    state = ReplyState()
    publisher = ReplyPublisher(message.conversation_id, message.pk, state.text)
    api: ApiRequest | None = None
    try:
        api = _until_database("the request", message.pk, lambda: selectors.api_request_get(reply=message))
        outcome = _generate(message, state, publisher, api)
    except DATABASE_DOWN:
        logger.exception("reply %s (task %s): the database failed", message.pk, task_id)
        outcome = ReplyOutcome(Message.Status.INTERRUPTED, LOST_DATABASE)
    except Exception:
        error_id = secrets.token_hex(4)
        logger.exception("reply %s (task %s) failed: error %s", message.pk, task_id, error_id)
        outcome = ReplyOutcome(Message.Status.FAILED, failure_text(error_id))
    seq = publisher.stored()

    def finish() -> None:
        # One transaction: the reply's quota reservation ends as its real count is recorded.
        with transaction.atomic():
            replies.reply_finish(
                message=message,
                status=outcome.status,
                content=state.content,
                reasoning=state.reasoning,
                tool_calls=state.tool_calls,
                seq=seq,
                prompt_tokens=state.prompt_tokens,
                reasoning_tokens=state.reasoning_tokens,
                answer_tokens=state.answer_tokens,
                queue_wait_ms=state.queue_wait_ms,
                ttft_ms=state.ttft_ms,
                tokens_per_second=state.tokens_per_second,
                error=outcome.error,
                retryable=outcome.retryable,
            )
            source = UsageDay.Source.CHAT if api is None else UsageDay.Source.API
            usage_record(message_id=message.pk, source=source)
            if api is not None:
                api_requests.api_reply_finished(reply=message, finish_reason=outcome.finish)

    # Before the write that tells the browsers: a next turn sent at once finds the cache offered.
    process.generation_ended(message.pk)
    _until_database("the final write", message.pk, finish)
    logger.info(
        "reply %s finished: %s (%d of %d prompt tokens from the cache)",
        message.pk, outcome.status, state.reused_tokens, state.prompt_tokens,
    )  # fmt: skip


def limit_notice(limit: int) -> str:
    """Return what a user reads under an answer cut by the conversation's answer length limit."""
    return (
        f"The answer stopped at this conversation's length limit of {limit:,} tokens (reasoning included); "
        "raise it in Settings."
    )


def garbled_text(error_id: str) -> str:
    """Return what a user reads about a reply the model wrote in a form that cannot be read."""
    return (
        f"The model's reply came out garbled, so it was stopped (error {error_id}). "
        "Retry, or rephrase your message; an admin can look up the error id."
    )


def failure_text(error_id: str) -> str:
    """Return what a user reads about a failure whose details only the log holds, under *error_id*."""
    return (
        f"Something went wrong while writing this reply (error {error_id}). "
        "Retry, or give an admin the error id."
    )


def _generate(
    message: Message, state: ReplyState, publisher: ReplyPublisher, api: ApiRequest | None
) -> ReplyOutcome:
    """Run the turn to its end (through tool calls); return how it ended.

    A reply to an API request (*api*) renders its prompt from the request, samples as it asks, and ends at a
    call to one of the client's functions, which the client runs.
    """
    owner = message.conversation.owner
    if not owner.is_active:  # deactivated after the reply was queued: nothing runs for the account
        logger.info("reply %s not generated: its owner %s is deactivated", message.pk, owner.pk)
        return ReplyOutcome(
            Message.Status.FAILED,
            "This reply was not written: the account that asked for it is deactivated.",
            retryable=False,
        )
    refusal = _until_database(
        "the model check",
        message.pk,
        lambda: reply_model_refusal(owner=owner, model_name=message.model_name),
    )
    if refusal:
        return ReplyOutcome(Message.Status.FAILED, refusal, retryable=False)
    engine, config = process.current()
    max_calls = settings.GPTOSS_MAX_TOOL_CALLS
    try:
        plan = _until_database("the tool settings", message.pk, lambda: plan_for(message, api))
    except GrammarError as refused:
        return ReplyOutcome(Message.Status.FAILED, _grammar_refusal(api, refused), retryable=False)
    budget = config.max_answer_tokens
    if plan.max_tokens is not None and plan.max_tokens < budget:  # a limit only ever lowers the budget
        budget = plan.max_tokens
        state.cut_notice = limit_notice(budget)
    # The tokens the reply holds against its owner's quota (replies queued before reservations hold none).
    if 0 < message.reserved_tokens < budget:
        budget = message.reserved_tokens
        state.cut_notice = QUOTA_NOTICE
    while True:
        try:
            ask = partial(plan.prompt, state.steps, context=config.context, budget=budget)
            prompt = _until_database("the history", message.pk, ask)
        except PromptRefused as refused:
            return ReplyOutcome(Message.Status.FAILED, str(refused), retryable=False)
        tokens, dropped, budget = prompt.tokens, prompt.dropped_turns, prompt.budget
        try:
            generation = engine.submit(
                tokens,
                sampling=plan.sampling,
                max_tokens=budget,
                stop_tokens=STOP_TOKENS,
                cache_key=plan.cache_key,
            )
        except GrammarError as refused:  # a schema the converter took but llama.cpp cannot parse
            return ReplyOutcome(Message.Status.FAILED, _grammar_refusal(api, refused), retryable=False)
        state.prompt_tokens = len(tokens)
        if not state.steps:  # the first generation of the turn: announced while the engine prefills
            _until_database("the start", message.pk, lambda: replies.reply_announce(message=message))
        if dropped:
            logger.info("reply %s: %d oldest turns left out to fit the context", message.pk, dropped)
            _notice(
                message,
                publisher,
                f"The {dropped} oldest turns of this conversation were left out: "
                f"they no longer fit the model's context of {config.context:,} tokens.",
            )
        with process.tracking(message.pk, generation):
            streamed = _stream(message, generation, state, publisher, plan.stops)
        call = streamed.call
        if call is None:
            return ReplyOutcome(streamed.status, streamed.error, finish=streamed.finish)
        if call.recipient in plan.client_functions:  # the client runs it, and sends its result next request
            publisher.tool(
                len(state.tool_calls),
                ToolCallRecord(recipient=call.recipient, channel=call.channel, arguments=call.arguments),
            )
            return ReplyOutcome(Message.Status.DONE, finish="tool_calls")
        budget -= generation.stats.generated_tokens
        if len(state.steps) > max_calls or budget <= 16:
            too_many = f"The answer used more than {max_calls} tool calls or its token budget."
            return ReplyOutcome(Message.Status.FAILED, too_many)
        index = len(state.tool_calls)
        # The card appears as the call starts; its result fills it in when the tool returns.
        started = ToolCallRecord(recipient=call.recipient, channel=call.channel, arguments=call.arguments)
        publisher.tool(index, started)
        if len(state.steps) == max_calls:  # one call too many: the model is told to answer with what it has
            result = _over_the_limit(started, max_calls)
        else:
            result = _run_tool(message, call, plan.toolset)
        publisher.tool(index, result.record)
        state.steps.append(
            ToolStep(
                channel=call.channel,
                recipient=call.recipient,
                content_type=call.content_type,
                arguments=call.arguments,
                analysis=state.segment_reasoning,
                result=result.text,
            )
        )
        # Stored as soon as it is known, so a browser that reloads sees the call and its result.
        if not state.save(message, publisher):
            return ReplyOutcome(Message.Status.CANCELLED)


def _grammar_refusal(api: ApiRequest | None, refused: GrammarError) -> str:
    """Return what the client reads about a grammar llama.cpp refused, naming the parameter behind it."""
    parameter = "tool_choice" if api is not None and api.sampling.get("call") else "response_format"
    return f"{parameter}: {refused}"


def _over_the_limit(started: ToolCallRecord, max_calls: int) -> ToolResult:
    text = f"Error: this answer already used its {max_calls} tool calls. Answer now with what you have."
    record = started.copy()
    record["result"], record["error"] = text, True
    return ToolResult(text=text, error=True, record=record)


def _run_tool(message: Message, call: ToolCall, toolset: Toolset) -> ToolResult:
    """Run *call* in this task thread (the engine keeps decoding other streams meanwhile)."""
    result = tool_run(call=call, toolset=toolset, conversation_id=message.conversation_id)
    logger.info("reply %s called %s (error: %s)", message.pk, call.recipient, result.error)
    return result


def _notice(message: Message, publisher: ReplyPublisher, notice: str) -> None:
    _until_database("a notice", message.pk, lambda: replies.reply_notice(message=message, notice=notice))
    publisher.notice(notice)


def _tell_queue(message: Message, state: ReplyState) -> None:
    """Tell the replies still queued for the model their new places: once this reply's first text is out,
    so that the first text waits for nothing else."""
    state.queue_told = True
    _until_database("the queue", message.pk, lambda: replies.queue_moved(model_name=message.model_name))


def _stream(
    message: Message,
    generation: Generation,
    state: ReplyState,
    publisher: ReplyPublisher,
    stops: tuple[str, ...] = (),
) -> StreamOutcome:
    """Feed the generation's tokens through the harmony parser into *state*, publishing and storing them.

    The answer ends before the first of *stops* (an API request's stop sequences): answer text that may be
    the start of one is held back until the next tokens tell.
    """
    parser = ReplyParser()
    publisher.flush()
    base_reasoning = state.reasoning
    call: ToolCall | None = None
    parse_error = ""
    held, stopped = "", False
    hold = max((len(stop) for stop in stops), default=1) - 1
    for token in generation:
        if state.ttft_ms is None and generation.stats.ttft_s is not None:
            state.ttft_ms = int(generation.stats.ttft_s * 1000)
            assert message.started_at is not None
            claimed_after = (message.started_at - message.created_at).total_seconds()
            state.queue_wait_ms = int((claimed_after + (generation.stats.queue_wait_s or 0)) * 1000)
        process.meter().add(1)
        for event in parser.feed(token):
            if isinstance(event, ReasoningDelta):
                publisher.text(reasoning=event.text)
            elif isinstance(event, FinalDelta) and stops and not stopped:
                held += event.text
                cut = min((i for i in (held.find(stop) for stop in stops) if i >= 0), default=-1)
                if cut >= 0:
                    publisher.text(content=held[:cut])
                    held, stopped = "", True
                    generation.cancel()
                elif len(held) > hold:
                    publisher.text(content=held[: len(held) - hold])
                    held = held[len(held) - hold :]
            elif isinstance(event, FinalDelta | CommentaryDelta) and not stopped:
                publisher.text(content=event.text)
            elif isinstance(event, ToolCall):
                call = event
            elif isinstance(event, ParseError):
                parse_error = event.message
                generation.cancel()
        if not state.queue_told and publisher.seq:
            _tell_queue(message, state)
        if time.monotonic() - state.last_flush >= FLUSH_EVERY_S and not state.save(message, publisher):
            generation.cancel()
    if not state.queue_told:
        _tell_queue(message, state)
    done = parser.finish(generation.stats.stop_reason or "error")
    if held and not stopped:
        publisher.text(content=held)
    publisher.flush()
    state.segment_reasoning = state.reasoning[len(base_reasoning) :]
    state.reasoning_tokens += done.reasoning_tokens
    state.answer_tokens += done.final_tokens + done.commentary_tokens
    state.tokens_per_second = generation.stats.decode_tps
    state.reused_tokens = generation.stats.reused_tokens
    reason = generation.stats.stop_reason
    if parse_error:
        # openai-harmony's words are for the admin: the user reads a sentence and the id that finds them.
        error_id = secrets.token_hex(4)
        logger.warning(
            "reply %s: the model's output could not be read (%s): error %s", message.pk, parse_error, error_id
        )
        return StreamOutcome(Message.Status.FAILED, garbled_text(error_id))
    if reason == "error":
        error_id = secrets.token_hex(4)
        logger.error("reply %s: the engine failed (%s): error %s", message.pk, generation.error, error_id)
        return StreamOutcome(Message.Status.FAILED, failure_text(error_id))
    if stopped:
        return StreamOutcome(Message.Status.DONE)
    if reason == "cancelled":
        return StreamOutcome(Message.Status.CANCELLED)
    if reason == "context_full":
        full = "The conversation filled the model's context; start a new one."
        return StreamOutcome(Message.Status.FAILED, full)
    if reason == "max_tokens":
        _notice(message, publisher, state.cut_notice)
        return StreamOutcome(Message.Status.DONE, finish="length")
    return StreamOutcome(Message.Status.DONE, call=call)
