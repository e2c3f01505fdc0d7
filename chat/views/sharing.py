"""Export, import and share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator

from asgiref.sync import sync_to_async
from django.contrib import messages as flash
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import selectors, transfer
from chat.access import access_conversation, access_share, access_shared
from chat.errors import ChatError
from chat.forms import (
    ImportForm,
)
from chat.interchange import records
from chat.services import (
    shares,
    transfers,
)
from chat.views.base import request_user, share_url, sidebar_context

EXPORT_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json; charset=utf-8"}


@never_cache
@require_GET
def conversation_export(request: HttpRequest, conversation_id: int, kind: str) -> HttpResponse:
    """Download one conversation as Markdown (*kind* "md") or as this app's JSON ("json")."""
    conversation = access_conversation(request.user, conversation_id)
    if kind == "json":
        body = transfer.conversation_json(conversation)
    else:
        body = transfer.conversation_markdown(conversation).encode()
    response = HttpResponse(body, content_type=EXPORT_TYPES[kind])
    filename = transfer.export_filename(conversation.display_title, kind)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


@never_cache
@require_GET
def account_export(request: HttpRequest) -> StreamingHttpResponse:
    """Download everything the user keeps here as a zip, written while it is sent (chat/transfer.py)."""
    user = request_user(request)
    chunks = transfer.account_archive(user=user, share_url=lambda token: share_url(request, token))
    response = StreamingHttpResponse(_streamed(request, chunks), content_type="application/zip")
    filename = f"gptoss-web-{transfer.export_filename(user.get_username(), 'zip')}"
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def _streamed(request: HttpRequest, chunks: Generator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    """Return *chunks* as the response should iterate them.

    Under ASGI (Daphne) Django reads a plain iterator whole before it sends a byte; an async iterator it sends
    as it goes. So there the chunks are taken one at a time in this request's own thread (where its database
    connection lives), and only the current one is held in memory.
    """
    if not isinstance(request, ASGIRequest):
        return chunks

    def take() -> bytes | None:
        return next(chunks, None)

    async def one_at_a_time() -> AsyncIterator[bytes]:
        step = sync_to_async(take, thread_sensitive=True)
        try:
            while (chunk := await step()) is not None:
                yield chunk
        finally:
            await sync_to_async(chunks.close, thread_sensitive=True)()

    return one_at_a_time()


@require_http_methods(["GET", "POST"])
def data_page(request: HttpRequest) -> HttpResponse:
    """Import & export: download all one's data; upload a file of conversations to import."""
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            imported = transfers.conversations_import(
                owner=request_user(request), data=upload.read(), filename=upload.name
            )
        except ChatError as error:
            form.add_error("file", str(error))
        else:
            count = len(imported.conversations)
            flash.success(
                request,
                f"Imported {count:,} conversation{'s' if count != 1 else ''} "
                f"({imported.message_count:,} messages) from {imported.source}. They are yours alone, "
                "listed by the time they were last used.",
            )
            if imported.left_out:
                left = "; ".join(f"{what}: {n:,}" for what, n in imported.left_out.items())
                flash.info(request, f"Not imported: {left}.")
            return redirect("chat:conversation", conversation_id=imported.conversations[0].pk)
    context = {
        **sidebar_context(request),
        "form": form,
        "caps": {
            "megabytes": f"{records.MAX_FILE_BYTES // (1024 * 1024):,}",
            "conversations": f"{records.MAX_CONVERSATIONS:,}",
            "messages": f"{records.MAX_MESSAGES:,}",
        },
    }
    return render(request, "chat/data.html", context, status=400 if form.errors else 200)


@require_POST
def share_create(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Make a read-only snapshot link of the conversation as it is now."""
    conversation = access_conversation(request.user, conversation_id)
    try:
        share = shares.share_create(conversation=conversation)
    except ChatError as error:
        flash.error(request, str(error))
        return redirect("chat:conversation", conversation_id=conversation.pk)
    flash.success(
        request,
        f"Link created: everyone signed in to this server who has it can read this conversation as it is now "
        f"({share.message_count} messages), not what you add later. {share_url(request, share.token)}",
    )
    return redirect(reverse("chat:conversation", args=[conversation.pk]) + "?shared=1")


@never_cache
@require_GET
def shares_page(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    context = {
        **sidebar_context(request),
        "shares": [(share, share_url(request, share.token)) for share in selectors.share_list(user=user)],
    }
    return render(request, "chat/shares.html", context)


@require_POST
def share_revoke(request: HttpRequest, share_id: int) -> HttpResponse:
    share = access_share(request.user, share_id)
    if shares.share_revoke(share=share):
        flash.success(request, f"Revoked the link to “{share.display_title}”: it leads nowhere from now on.")
    return redirect("chat:shares")


@never_cache  # a revoked share must not linger in a browser's cache
@require_GET
def share_detail(request: HttpRequest, token: str) -> HttpResponse:
    """A shared snapshot, read-only, for any signed-in user with its link (404 once revoked)."""
    share = access_shared(request.user, token)
    record = transfer.share_record(share)
    context = {
        **sidebar_context(request),
        "share": share,
        "record": record,
        "chat_messages": transfer.share_payloads(record),
    }
    return render(request, "chat/share.html", context)


@require_POST
def share_continue(request: HttpRequest, token: str) -> HttpResponse:
    """Copy the shared snapshot into a new conversation of the reader's own, and open it."""
    share = access_shared(request.user, token)
    conversation = shares.share_continue(share=share, reader=request_user(request))
    flash.success(
        request,
        f"This is your own copy of “{share.display_title}”, shared by {share.owner.get_username()}: "
        "what you send here stays with you.",
    )
    return redirect("chat:conversation", conversation_id=conversation.pk)
