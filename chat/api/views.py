"""The /v1/ endpoints: authorize the key, parse, call one service, and answer in OpenAI's shape.

A session cookie never authorizes them (CSRF does not apply: nothing here reads a cookie). The key acts as
its user: model permissions, the in-flight limit and the daily quota, the same queue as the chat page.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from chat.api import completions, responses
from chat.api.completions import CompletionRequest
from chat.api.errors import ApiError, from_chat_error
from chat.api.follow import follow
from chat.api.responses import ResponsesRequest
from chat.errors import ApiKeyRefused, ChatError
from chat.events import message_payload
from chat.frames import DoneFrame, MessagePayload
from chat.models import ApiRequest, Message
from chat.services.api_keys import ApiKeyAuth, api_key_authenticate
from chat.services.api_requests import (
    ResponseNotFound,
    api_reply_forget,
    api_reply_queue,
    api_response_delete,
    api_response_get,
)
from chat.services.replies import reply_cancel
from gptoss_web.reads import reads_once
from inference.quotas import model_access_check
from inference.selectors import served_model_list, serving_states
from inference.tools.selectors import tools_available

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


def _served_check(model: str) -> None:
    if model not in serving_states():
        raise ApiError(
            503,
            f"No GPU worker is serving {model} right now; try again later or ask an admin.",
            code="model_not_served",
        )


@reads_once()  # its own model checks and api_reply_queue's read the same rows: once each
def _queue(request: HttpRequest) -> tuple[ApiKeyAuth, CompletionRequest, Message]:
    """Authorize, parse and queue a Chat Completions request; raise ApiError when it cannot be queued."""
    auth = _authenticate(request)
    parsed = completions.parse(request.body)
    try:
        model_access_check(user=auth.user, model_name=parsed.model)
        _served_check(parsed.model)
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


def _ended(reply: Message, done: DoneFrame | None, *, background: bool = False) -> None:
    """After a request stops following its reply: cancel it if it still runs (unless it runs in the
    background), forget it once it ended (unless it is stored)."""
    if done is None:
        if not background:
            reply_cancel(
                conversation=reply.conversation
            )  # the client left: its slot is freed at the next step
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


# --- The Responses API -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Queued:
    """A Responses request, queued: its reply and the response object it starts as."""

    auth: ApiKeyAuth
    parsed: ResponsesRequest
    reply: Message
    response: dict[str, Any]
    left_out: list[str]  # the server tools asked for that this user cannot have (web_search), and why


def _builtins(parsed: ResponsesRequest, user: Any) -> tuple[list[str], list[str]]:
    """Return the server tools the request gets, and what was left out: a `web_search` the user may not
    use, or without a search engine configured, is left out (clients such as Codex always send one); any
    other tool is refused by name."""
    granted: list[str] = []
    left_out: list[str] = []
    if not parsed.builtins:
        return granted, left_out
    available = tools_available(user=user)
    for tool, asked_as in parsed.builtins.items():
        if available.browser if tool == "browser" else available.python:
            granted.append(tool)
        elif tool == "browser":
            why = available.browser_reason if available.browser_allowed else "your account may not use it"
            left_out.append(f"{asked_as} left out: {why}")
        else:
            raise ApiError(
                400,
                f"The tool {asked_as!r} is not available to you on this server: an admin "
                "switches it on (Tool settings) for your groups. Leave it out.",
                param="tools",
                code="tool_not_available",
            )
    return granted, left_out


@reads_once()  # as _queue
def _queue_response(request: HttpRequest) -> _Queued:
    """Authorize, parse and queue a Responses request; raise ApiError when it cannot be queued."""
    auth = _authenticate(request)
    parsed = responses.parse(request.body)
    try:
        model_access_check(user=auth.user, model_name=parsed.model)
        _served_check(parsed.model)
        after, previous = None, None
        if parsed.previous_response_id is not None:
            after = api_response_get(owner=auth.user, response_id=parsed.previous_response_id)
            if after.reply.in_flight:
                raise ApiError(
                    400,
                    "The previous response is still in progress: wait for it to end, or cancel it.",
                    param="previous_response_id",
                    code="previous_response_in_progress",
                )
            previous = responses.Previous(prompt=after.prompt, reply=message_payload(after.reply))
        granted, left_out = _builtins(parsed, auth.user)
        prompt = responses.prompt_for(parsed, previous=previous, builtins=granted, user_id=auth.user.pk)
        response_id = f"resp_{secrets.token_hex(24)}"
        created_at = time.time()
        options = {**parsed.options, "created_at": created_at}
        reply = api_reply_queue(
            owner=auth.user,
            kind=ApiRequest.Kind.RESPONSES,
            model_name=parsed.model,
            effort=parsed.effort,
            prompt=prompt,
            sampling=parsed.sampling,
            max_tokens=parsed.max_tokens,
            store=parsed.store,
            after=after,
            response_id=response_id,
            options=options,
        )
    except ResponseNotFound as missing:
        raise ApiError(404, str(missing), param="previous_response_id", code="response_not_found") from None
    except ChatError as refused:
        raise from_chat_error(refused, model=parsed.model) from None
    response = responses.response_object(
        response_id,
        model=parsed.model,
        effort=parsed.effort,
        sampling=parsed.sampling,
        options=options,
        created_at=created_at,
        message=None,
    )
    return _Queued(auth, parsed, reply, response, left_out)


def _owned_response(auth: ApiKeyAuth, response_id: str) -> ApiRequest:
    """Return *auth*'s user's response *response_id*; raise ApiError 404 (another user's ids too)."""
    try:
        return api_response_get(owner=auth.user, response_id=response_id)
    except ResponseNotFound as missing:
        raise ApiError(404, str(missing), code="response_not_found") from None


def _response_now(
    auth: ApiKeyAuth, response_id: str, message: MessagePayload | None = None
) -> dict[str, Any]:
    """Return the stored response *response_id* of *auth*'s user as it stands; raise ApiError 404."""
    row = _owned_response(auth, response_id)
    options = row.options
    return responses.response_object(
        response_id,
        model=row.reply.model_name,
        effort=row.reply.reasoning_effort,
        sampling=row.sampling,
        options=options,
        created_at=options.get("created_at", row.created_at.timestamp()),
        message=message or message_payload(row.reply),
        finish_reason=row.finish_reason,
        sealed_for=auth.user.pk if options.get("sealed_reasoning") else None,
    )


def _with_warnings[R: HttpResponse | StreamingHttpResponse](response: R, left_out: list[str]) -> R:
    if left_out:
        response["X-Gptoss-Warning"] = "; ".join(left_out)
    return response


@_api
async def responses_create(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """`POST /v1/responses`, streamed (server-sent events) or not, in the background or not."""
    try:
        if request.method != "POST":
            await database_sync_to_async(_authenticate)(request)
            raise ApiError(405, "Use POST for /v1/responses.")
        queued = await database_sync_to_async(_queue_response)(request)
    except ApiError as error:
        return error.response()
    header = request.headers.get("Authorization")

    def alive() -> None:
        api_key_authenticate(header)

    parsed = queued.parsed
    if parsed.stream:
        response = StreamingHttpResponse(_response_stream(queued, alive), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return _with_warnings(response, queued.left_out)
    if parsed.background:  # it runs on; the client polls GET /v1/responses/{id}
        return _with_warnings(JsonResponse(queued.response), queued.left_out)
    done: DoneFrame | None = None
    try:
        async for event in follow(queued.reply, alive):
            if event["type"] == "done":
                done = event
    except ApiKeyRefused as refused:
        return ApiError(refused.status, str(refused), code=refused.reason.replace(" ", "_")).response()
    finally:
        await database_sync_to_async(_ended)(queued.reply, done)
    assert done is not None
    finish = await database_sync_to_async(_finish_reason)(queued.reply.pk)
    sealed_for = queued.auth.user.pk if parsed.options["sealed_reasoning"] else None
    output = responses.output_items(done["message"], sealed_for=sealed_for)
    final = responses.response_object_update(queued.response, done["message"], finish, output)
    return _with_warnings(JsonResponse(final), queued.left_out)


async def _response_stream(queued: _Queued, alive: Any) -> AsyncIterator[bytes]:
    """Write the reply as the spec's events, in order; a client that leaves cancels it (unless background)."""
    sealed_for = queued.auth.user.pk if queued.parsed.options["sealed_reasoning"] else None
    writer = responses.EventWriter(queued.response, queued.reply.pk, sealed_for=sealed_for)
    done: DoneFrame | None = None
    try:
        for chunk in writer.begin():
            yield chunk
        async for event in follow(queued.reply, alive):
            chunks: list[bytes] = []
            if event["type"] == "delta":
                if event["reasoning"]:
                    chunks += writer.reasoning(event["reasoning"])
                if event["content"]:
                    chunks += writer.text(event["content"])
            elif event["type"] == "tool":
                chunks += writer.tool(event["index"], event["call"])
            elif event["type"] == "done":
                done = event
            for chunk in chunks:
                yield chunk
        assert done is not None
        finish = await database_sync_to_async(_finish_reason)(queued.reply.pk)
        for chunk in writer.finish(done["message"], finish):
            yield chunk
    except ApiKeyRefused as refused:
        # The spec's `error` event; its `error` field makes OpenAI's clients raise, as for Chat Completions.
        error = ApiError(refused.status, str(refused), code=refused.reason.replace(" ", "_")).body()["error"]
        yield writer.event("error", code=error["code"], message=error["message"], param=None, error=error)
    finally:
        await database_sync_to_async(_ended)(queued.reply, done, background=queued.parsed.background)


@_api
def response_detail(request: HttpRequest, response_id: str) -> HttpResponse:
    """`GET /v1/responses/{id}`: a stored response as it stands; `DELETE`: delete it."""
    try:
        auth = _authenticate(request)
        if request.method == "DELETE":
            try:
                api_response_delete(owner=auth.user, response_id=response_id)
            except ResponseNotFound as missing:
                raise ApiError(404, str(missing), code="response_not_found") from None
            return JsonResponse({"id": response_id, "object": "response.deleted", "deleted": True})
        if request.method != "GET":
            raise ApiError(405, "Use GET or DELETE for /v1/responses/{id}.")
        return JsonResponse(_response_now(auth, response_id))
    except ApiError as error:
        return error.response()


@_api
def response_cancel(request: HttpRequest, response_id: str) -> HttpResponse:
    """`POST /v1/responses/{id}/cancel`: stop a background response; its text so far is kept."""
    try:
        auth = _authenticate(request)
        if request.method != "POST":
            raise ApiError(405, "Use POST for /v1/responses/{id}/cancel.")
        row = _owned_response(auth, response_id)
        if not row.options.get("background"):
            raise ApiError(
                400,
                "Only a response created with background: true can be cancelled; close the "
                "stream or the connection to stop any other.",
                code="not_background",
            )
        reply_cancel(conversation=row.reply.conversation)
        return JsonResponse(_response_now(auth, response_id))
    except ApiError as error:
        return error.response()
