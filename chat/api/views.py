"""The /v1/ endpoints: authorize the key, parse, call one service, and answer in OpenAI's shape.

A session cookie never authorizes them (CSRF does not apply: nothing here reads a cookie). The key acts as
its user: model permissions, the in-flight limit and the daily quota, the same queue as the chat page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from chat.api import completions
from chat.api.completions import CompletionRequest
from chat.api.errors import ApiError, from_chat_error
from chat.api.follow import follow
from chat.errors import ApiKeyRefused, ChatError
from chat.frames import DoneFrame, MessagePayload
from chat.models import ApiRequest, Message
from chat.services.api_keys import ApiKeyAuth, api_key_authenticate
from chat.services.api_requests import api_reply_forget, api_reply_queue
from chat.services.replies import reply_cancel
from inference.quotas import model_access_check
from inference.selectors import served_model_list, serving_states

logger = logging.getLogger(__name__)


def _authenticate(request: HttpRequest) -> ApiKeyAuth:
    try:
        return api_key_authenticate(request.headers.get("Authorization"))
    except ApiKeyRefused as refused:
        raise ApiError(refused.status, str(refused), code=refused.reason.replace(" ", "_")) from None


def _api(view: Any) -> Any:
    """Mark *view* as an API endpoint: no session login, no CSRF (the key in the header authorizes it)."""
    return csrf_exempt(login_not_required(view))


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "gptoss-web"}


@_api
def models_list(request: HttpRequest) -> HttpResponse:
    """`GET /v1/models`: the models this key's user may use."""
    try:
        auth = _authenticate(request)
    except ApiError as error:
        return error.response()
    data = [_model_object(row.name) for row in served_model_list(user=auth.user)]
    return JsonResponse({"object": "list", "data": data})


@_api
def model_detail(request: HttpRequest, model: str) -> HttpResponse:
    """`GET /v1/models/{model}`: one model, if this key's user may use it."""
    try:
        auth = _authenticate(request)
        if model not in {row.name for row in served_model_list(user=auth.user)}:
            raise ApiError(404, f"The model {model!r} does not exist or is not available to you.",
                           param="model", code="model_not_found")  # fmt: skip
    except ApiError as error:
        return error.response()
    return JsonResponse(_model_object(model))


def _queue(request: HttpRequest) -> tuple[ApiKeyAuth, CompletionRequest, Message]:
    """Authorize, parse and queue a Chat Completions request; raise ApiError when it cannot be queued."""
    auth = _authenticate(request)
    parsed = completions.parse(request.body)
    try:
        model_access_check(user=auth.user, model_name=parsed.model)
        if parsed.model not in serving_states():
            raise ApiError(
                503,
                f"No GPU worker is serving {parsed.model} right now; try again later or ask an admin.",
                code="model_not_served",
            )
        reply = api_reply_queue(
            owner=auth.user,
            kind=ApiRequest.Kind.CHAT_COMPLETIONS,
            model_name=parsed.model,
            effort=parsed.effort,
            prompt=parsed.prompt,
            sampling=parsed.sampling,
            max_tokens=parsed.max_tokens,
        )
    except ChatError as refused:
        raise from_chat_error(refused, model=parsed.model) from None
    return auth, parsed, reply


def _finish_reason(reply_id: int) -> str:
    return (
        ApiRequest.objects.filter(reply_id=reply_id).values_list("finish_reason", flat=True).first() or "stop"
    )


def _failure(message: MessagePayload) -> ApiError | None:
    """Return the error of a reply that did not end well (None when it is done)."""
    if message["status"] == Message.Status.DONE:
        return None
    if message["status"] == Message.Status.CANCELLED:
        return ApiError(500, "The reply was cancelled before it finished.", code="cancelled")
    return ApiError(500, message["error"] or "The reply failed.", code=f"reply_{message['status']}")


def _ended(reply: Message, done: DoneFrame | None) -> None:
    """After a request stops following its reply: cancel it if it still runs, forget it once it ended."""
    if done is None:
        reply_cancel(conversation=reply.conversation)  # the client left: its slot is freed at the next step
        return
    api_reply_forget(reply=reply)


@_api
async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """`POST /v1/chat/completions`, streamed (SSE) or not."""
    try:
        if request.method != "POST":
            await database_sync_to_async(_authenticate)(request)  # a stranger learns nothing, not even this
            raise ApiError(405, "Use POST for /v1/chat/completions.")
        auth, parsed, reply = await database_sync_to_async(_queue)(request)
    except ApiError as error:
        return error.response()
    header = request.headers.get("Authorization")

    def alive() -> None:
        api_key_authenticate(header)  # raises once the key is revoked or the API switched off

    if parsed.stream:
        response = StreamingHttpResponse(
            _stream(parsed, reply, alive), content_type="text/event-stream; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx passes each event on at once
        return response
    done: DoneFrame | None = None
    finish = "stop"
    try:
        async for event in follow(reply, alive):
            if event["type"] == "done":
                done = event
                finish = await database_sync_to_async(_finish_reason)(reply.pk)
    except ApiKeyRefused as refused:
        return ApiError(refused.status, str(refused), code=refused.reason.replace(" ", "_")).response()
    finally:
        await database_sync_to_async(_ended)(reply, done)
    assert done is not None
    failure = _failure(done["message"])
    if failure is not None:
        return failure.response()
    logger.info("reply %s answered to API key %s", reply.pk, auth.key.prefix)
    return JsonResponse(completions.completion(parsed, done["message"], finish))


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


async def _stream(parsed: CompletionRequest, reply: Message, alive: Any) -> AsyncIterator[bytes]:
    """Write the reply as `chat.completion.chunk` events, then `[DONE]`; a client that leaves cancels it."""
    done: DoneFrame | None = None
    sent_content = ""
    try:
        yield _sse(completions.chunk(parsed, reply.pk, {"role": "assistant", "content": ""}))
        async for event in follow(reply, alive):
            if event["type"] == "delta":
                delta: dict[str, Any] = {}
                if event["content"]:
                    delta["content"] = event["content"]
                    sent_content += event["content"]
                if event["reasoning"] and not parsed.exclude_reasoning:
                    delta["reasoning"] = event["reasoning"]
                if delta:
                    yield _sse(completions.chunk(parsed, reply.pk, delta))
            elif event["type"] == "done":
                done = event
        assert done is not None
        message = done["message"]
        failure = _failure(message)
        if failure is not None:
            yield _sse(failure.body())
            yield _sse("[DONE]")
            return
        # What the stored reply holds beyond what was streamed (an event lost on the way): sent now.
        rest: dict[str, Any] = {}
        if message["content"].startswith(sent_content) and len(message["content"]) > len(sent_content):
            rest["content"] = message["content"][len(sent_content) :]
        # A call to the client's functions ends the reply: sent whole, as it was stored.
        calls = completions.tool_calls(reply.pk, message)
        if calls:
            rest["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
        if rest:
            yield _sse(completions.chunk(parsed, reply.pk, rest))
        finish = await database_sync_to_async(_finish_reason)(reply.pk)
        yield _sse(completions.chunk(parsed, reply.pk, {}, finish))
        if parsed.include_usage:
            last = completions.chunk(parsed, reply.pk, {})
            last["choices"] = []
            last["usage"] = completions.usage(message)
            yield _sse(last)
        yield _sse("[DONE]")
    except ApiKeyRefused as refused:
        yield _sse(ApiError(refused.status, str(refused), code="key_refused").body())
    finally:
        await database_sync_to_async(_ended)(reply, done)
