"""Pages and form posts of the chat app; each parses input, calls one service or selector, and answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import search, selectors, transfer
from chat.access import access_api_key, access_conversation, access_project, access_share, access_shared
from chat.errors import ChatError
from chat.forms import (
    ApiKeyCreateForm,
    ImportForm,
    InvitationSignupForm,
    MessageForm,
    ProfileForm,
    ProjectForm,
    RenameForm,
    SearchForm,
    SettingsForm,
)
from chat.interchange import records
from chat.models import Conversation, Invitation
from chat.services import (
    api_keys,
    branches,
    conversations,
    invitations,
    messages,
    profiles,
    projects,
    shares,
    transfers,
)


def _user(request: HttpRequest) -> User:
    """Return the signed-in user (LoginRequiredMiddleware guarantees there is one)."""
    assert isinstance(request.user, User)
    return request.user


def _sidebar(request: HttpRequest) -> dict[str, object]:
    """Return what the sidebar of every page shows: pinned conversations, the first page of the rest (the
    others load as the user scrolls), and the projects."""
    user = _user(request)
    page = selectors.sidebar_page(user=user)
    return {
        "pinned": selectors.pinned_list(user=user),
        "sidebar_page": page,
        "sidebar_next": _next_url(reverse("chat:conversation_list"), page),
        "projects": selectors.project_list(user=user),
    }


def _next_url(list_url: str, page: selectors.SidebarPage) -> str:
    """Return the address of the page after *page* of the list at *list_url*, or "" after the last."""
    return f"{list_url}?after={page.next_cursor}" if page.next_cursor else ""


def _render_app(
    request: HttpRequest,
    conversation: Conversation | None,
    *,
    message_form: MessageForm | None = None,
    settings_form: SettingsForm | None = None,
    status: int = 200,
) -> HttpResponse:
    # The socket's `state` frame: the page and the live view render the same facts.
    state = selectors.conversation_state(conversation=conversation) if conversation else None
    context = {
        **_sidebar(request),
        "conversation": conversation,
        "project": conversation.project if conversation else None,
        "chat_messages": state["messages"] if state else [],
        "context_meter": state.get("context") if state else None,
        "message_form": message_form or MessageForm(),
        "settings_form": settings_form
        or (SettingsForm.for_conversation(conversation) if conversation else None),
        "shares": [
            (share, _share_url(request, share.token))
            for share in selectors.conversation_share_list(conversation=conversation)
        ]
        if conversation
        else [],
    }
    return render(request, "chat/app.html", context, status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Show the conversation list and a composer that starts a new conversation."""
    return _render_app(request, None)


@require_POST
def conversation_create(request: HttpRequest) -> HttpResponse:
    """Start a conversation; with text, send it as the first message."""
    form = MessageForm(request.POST)
    text = request.POST.get("text", "")
    if text and not form.is_valid():
        return _render_app(request, None, message_form=form, status=400)
    conversation = conversations.conversation_create(owner=_user(request))
    if text:
        try:
            messages.message_send(conversation=conversation, text=form.cleaned_data["text"])
        except ChatError as error:
            conversations.conversation_delete(conversation=conversation)
            form.add_error("text", str(error))
            return _render_app(request, None, message_form=form, status=409)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@require_GET
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    return _render_app(request, conversation)


@require_POST
def message_create(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Send a message without JavaScript; the typed text is kept on any error."""
    conversation = access_conversation(request.user, conversation_id)
    form = MessageForm(request.POST)
    if not form.is_valid():
        return _render_app(request, conversation, message_form=form, status=400)
    try:
        messages.message_send(conversation=conversation, text=form.cleaned_data["text"])
    except ChatError as error:
        form.add_error("text", str(error))
        return _render_app(request, conversation, message_form=form, status=409)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@require_POST
def branch_switch(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Show another version of a message (the page's ‹ › buttons without JavaScript)."""
    conversation = access_conversation(request.user, conversation_id)
    try:
        message_id = int(request.POST.get("message", ""))
    except ValueError:
        message_id = 0
    try:
        branches.branch_switch(conversation=conversation, message_id=message_id)
    except ChatError as error:
        flash.error(request, str(error))
    return redirect("chat:conversation", conversation_id=conversation.pk)


@require_POST
def conversation_rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    form = RenameForm(request.POST)
    if not form.is_valid():
        flash.error(request, "; ".join(str(e) for e in form.errors.get("title", [])))
        return redirect("chat:conversation", conversation_id=conversation.pk)
    conversations.conversation_rename(conversation=conversation, title=form.cleaned_data["title"])
    return redirect("chat:conversation", conversation_id=conversation.pk)


@require_POST
def conversation_settings(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    form = SettingsForm.for_conversation(conversation, data=request.POST)
    if not form.is_valid():
        return _render_app(request, conversation, settings_form=form, status=400)
    conversations.conversation_update_settings(conversation=conversation, **form.cleaned_data)
    flash.success(request, "Settings saved. They apply from the next reply.")
    return redirect("chat:conversation", conversation_id=conversation.pk)


@require_http_methods(["GET", "POST"])
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    if request.method == "POST":
        conversations.conversation_delete(conversation=conversation)
        flash.success(request, f"Deleted “{conversation.display_title}”.")
        return redirect("chat:index")
    return render(
        request,
        "chat/conversation_confirm_delete.html",
        {"conversation": conversation, **_sidebar(request)},
    )


def _search(user: User, text: str, include_reasoning: bool) -> list[search.SearchHit]:
    """Search; the reasoning only for a user no group hides it from (it must never reach their browser)."""
    include_reasoning = include_reasoning and selectors.reasoning_shown(user=user)
    return search.search(user=user, text=text, include_reasoning=include_reasoning)


@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    """Search the user's conversations: the page that works without JavaScript (`/search/?q=`)."""
    form = SearchForm(request.GET)
    text, include_reasoning = form.query()
    user = _user(request)
    context = {
        **_sidebar(request),
        "form": form,
        "searched": bool(text),
        "hits": _search(user, text, include_reasoning),
    }
    return render(request, "chat/search.html", context)


@never_cache
@require_GET
def search_hits(request: HttpRequest) -> JsonResponse:
    """The same search for the palette, as JSON; matches come as marked parts, never as markup."""
    text, include_reasoning = SearchForm(request.GET).query()
    hits = _search(_user(request), text, include_reasoning)
    return JsonResponse({"query": text, "hits": [search.hit_json(hit) for hit in hits]})


def _render_api_keys(
    request: HttpRequest, *, form: ApiKeyCreateForm | None = None, created: str = "", status: int = 200
) -> HttpResponse:
    user = _user(request)
    context = {
        **_sidebar(request),
        "api_keys": selectors.api_key_list(user=user),
        "api_allowed": selectors.api_allowed(user=user),
        "form": form or ApiKeyCreateForm(),
        "created_key": created,
    }
    return render(request, "chat/api_keys.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def api_keys_page(request: HttpRequest) -> HttpResponse:
    """List the user's API keys; on POST, create one and show it, this once, in the answer itself.

    The new key goes into this response only (never the session, never a redirect's next page, and
    `never_cache`): reloading the list no longer shows it.
    """
    if request.method != "POST":
        return _render_api_keys(request)
    if not selectors.api_allowed(user=_user(request)):
        return _render_api_keys(request, status=403)
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        return _render_api_keys(request, form=form, status=400)
    _key, plaintext = api_keys.api_key_create(
        owner=_user(request), name=form.cleaned_data["name"], expires_at=form.expires_at()
    )
    return _render_api_keys(request, created=plaintext, status=201)


@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = access_api_key(request.user, key_id)
    if api_keys.api_key_revoke(key=key, by=_user(request)):
        flash.success(
            request, f"Revoked “{key.name}” ({key.prefix}…): programs using it are refused from now on."
        )
    return redirect("chat:api_keys")


@require_http_methods(["GET", "POST"])
def profile_page(request: HttpRequest) -> HttpResponse:
    """Show the user's profile; on POST, save it (the theme applies from the very next page)."""
    user = _user(request)
    form = ProfileForm.for_user(user, selectors.profile_get(user=user), data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            profiles.profile_update(user=user, **form.cleaned_data)
        except ChatError as error:
            form.add_error("model_name", str(error))
        else:
            flash.success(request, "Profile saved. New conversations start with these settings.")
            return redirect("chat:profile")
    context = {**_sidebar(request), "form": form}
    return render(request, "chat/profile.html", context, status=400 if form.errors else 200)


@require_POST
def profile_notifications(request: HttpRequest) -> HttpResponse:
    """Switch notifications on or off: the user menu's switch posts here (static/js/attention.js)."""
    on = request.POST.get("notifications") == "on"
    profiles.profile_notifications_set(user=_user(request), on=on)
    return JsonResponse({"notifications": on})


@login_not_required
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Let an invited person pick a username and password (only when invitations are enabled)."""
    if not settings.GPTOSS_INVITATIONS:
        raise Http404("Invitations are disabled")
    invitation = get_object_or_404(Invitation, token=token)
    if not invitation.usable:
        return render(request, "chat/invitation.html", {"expired": True}, status=410)
    form = InvitationSignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = invitations.invitation_accept(
                invitation=invitation,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except ChatError as error:
            form.add_error(None, str(error))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("chat:index")
    return render(request, "chat/invitation.html", {"form": form}, status=400 if form.errors else 200)


# --- Export, import, share ---------------------------------------------------------------------------------

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
    user = _user(request)
    chunks = transfer.account_archive(user=user, share_url=lambda token: _share_url(request, token))
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
                owner=_user(request), data=upload.read(), filename=upload.name
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
        **_sidebar(request),
        "form": form,
        "caps": {
            "megabytes": f"{records.MAX_FILE_BYTES // (1024 * 1024):,}",
            "conversations": f"{records.MAX_CONVERSATIONS:,}",
            "messages": f"{records.MAX_MESSAGES:,}",
        },
    }
    return render(request, "chat/data.html", context, status=400 if form.errors else 200)


def _share_url(request: HttpRequest, token: str) -> str:
    return request.build_absolute_uri(reverse("chat:share", args=[token]))


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
        f"({share.message_count} messages), not what you add later. {_share_url(request, share.token)}",
    )
    return redirect(reverse("chat:conversation", args=[conversation.pk]) + "?shared=1")


@never_cache
@require_GET
def shares_page(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    context = {
        **_sidebar(request),
        "shares": [(share, _share_url(request, share.token)) for share in selectors.share_list(user=user)],
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
        **_sidebar(request),
        "share": share,
        "record": record,
        "chat_messages": transfer.share_payloads(record),
    }
    return render(request, "chat/share.html", context)


@require_POST
def share_continue(request: HttpRequest, token: str) -> HttpResponse:
    """Copy the shared snapshot into a new conversation of the reader's own, and open it."""
    share = access_shared(request.user, token)
    conversation = shares.share_continue(share=share, reader=_user(request))
    flash.success(
        request,
        f"This is your own copy of “{share.display_title}”, shared by {share.owner.get_username()}: "
        "what you send here stays with you.",
    )
    return redirect("chat:conversation", conversation_id=conversation.pk)


# --- Organize: the sidebar's pages, pin, archive, projects ------------------------------------------------


def _cursor(request: HttpRequest) -> selectors.Cursor | None:
    """Return the `after` cursor of a list page; a malformed one is a 404 (no such page)."""
    text = request.GET.get("after", "")
    if not text:
        return None
    cursor = selectors.Cursor.parse(text)
    if cursor is None:
        raise Http404("No such page")
    return cursor


def _wants_fragment(request: HttpRequest) -> bool:
    return request.GET.get("fragment") == "1"


def _render_rows(
    request: HttpRequest, page: selectors.SidebarPage, more_url: str, *, kind: str = "recent"
) -> HttpResponse:
    """Answer the infinite scroll: the page's rows and, when there are more, the next "Show more" link."""
    context = {
        "rows": page.rows,
        "next_url": _next_url(more_url, page),
        "projects": selectors.project_list(user=_user(request)),
        "list_kind": kind,
        "back_url": more_url,
    }
    return render(request, "chat/_rows.html", context)


@require_GET
def conversation_list_page(request: HttpRequest) -> HttpResponse:
    """The sidebar's next page: its rows alone for the infinite scroll (`?fragment=1`), else a page of its own
    with a "Show more" link (what the sidebar's link opens without JavaScript)."""
    user = _user(request)
    after = _cursor(request)
    page = selectors.sidebar_page(user=user, after=after)
    if _wants_fragment(request):
        return _render_rows(request, page, reverse("chat:conversation_list"))
    context = {
        **_sidebar(request),
        "page_title": "Conversations",
        "rows": page.rows,
        "next_url": _next_url(reverse("chat:conversation_list"), page),
        "list_kind": "recent",
    }
    return render(request, "chat/conversation_list.html", context)


@require_GET
def archived_list_page(request: HttpRequest) -> HttpResponse:
    """The archived conversations, newest first: open one, or restore it to the sidebar."""
    page = selectors.archived_page(user=_user(request), after=_cursor(request))
    more_url = reverse("chat:archived")
    if _wants_fragment(request):
        return _render_rows(request, page, more_url, kind="archived")
    context = {
        **_sidebar(request),
        "page_title": "Archived",
        "rows": page.rows,
        "next_url": _next_url(more_url, page),
        "list_kind": "archived",
    }
    return render(request, "chat/conversation_list.html", context)


@never_cache
@require_GET
def conversation_row(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """One conversation's sidebar row, for a live update (static/js/sidebar.js places it)."""
    conversation = access_conversation(request.user, conversation_id)
    context = {
        "row": selectors.sidebar_row_get(conversation=conversation),
        "projects": selectors.project_list(user=_user(request)),
        "list_kind": "archived" if conversation.archived_at else "recent",
        "back_url": reverse("chat:index"),
    }
    return render(request, "chat/_row.html", context)


def _back(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    """Answer a row action: JSON to the sidebar's script, else back where the form was (a page of this site),
    else to the conversation."""
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"conversation": conversation.pk})
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect("chat:conversation", conversation_id=conversation.pk)


def _refused(request: HttpRequest, conversation: Conversation, error: ChatError) -> HttpResponse:
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"error": str(error)}, status=409)
    flash.error(request, str(error))
    return _back(request, conversation)


@require_POST
def conversation_pin(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Pin (`pinned=1`) or unpin (`pinned=0`) a conversation."""
    conversation = access_conversation(request.user, conversation_id)
    try:
        conversations.conversation_pin(conversation=conversation, pinned=request.POST.get("pinned") == "1")
    except ChatError as error:
        return _refused(request, conversation, error)
    return _back(request, conversation)


@require_POST
def conversation_archive(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Archive (`archived=1`) or restore (`archived=0`) a conversation."""
    conversation = access_conversation(request.user, conversation_id)
    archived = request.POST.get("archived") == "1"
    conversations.conversation_archive(conversation=conversation, archived=archived)
    if archived and request.headers.get("Accept") != "application/json":
        title = conversation.display_title
        flash.success(request, f"Archived “{title}”: find it under Archived, or by search.")
    return _back(request, conversation)


@require_POST
def conversation_move(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Move a conversation into one of the user's projects (`project=<id>`), or out of any (`project=`)."""
    conversation = access_conversation(request.user, conversation_id)
    wanted = request.POST.get("project", "")
    project = access_project(request.user, wanted) if wanted else None
    conversations.conversation_move(conversation=conversation, project=project)
    return _back(request, conversation)


@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    """A new project: its name, instructions and defaults."""
    user = _user(request)
    form = ProjectForm.for_project(user, None, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = projects.project_create(owner=user, **form.cleaned_data)
        except ChatError as error:
            form.add_error("name", str(error))
        else:
            return redirect("chat:project", project_id=project.pk)
    context = {**_sidebar(request), "form": form, "project": None}
    return render(request, "chat/project.html", context, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    """A project: its conversations (paged as the sidebar is), a new conversation in it, and its settings
    (POST saves them)."""
    user = _user(request)
    project = access_project(request.user, project_id)
    more_url = reverse("chat:project", args=[project.pk])
    page = selectors.project_conversation_page(project=project, after=_cursor(request))
    if request.method == "GET" and _wants_fragment(request):
        return _render_rows(request, page, more_url, kind="project")
    form = ProjectForm.for_project(user, project, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            projects.project_update(project=project, **form.cleaned_data)
        except ChatError as error:
            form.add_error("name", str(error))
        else:
            flash.success(request, "Project saved. New conversations in it start with these settings.")
            return redirect("chat:project", project_id=project.pk)
    context = {
        **_sidebar(request),
        "form": form,
        "project": project,
        "rows": page.rows,
        "next_url": _next_url(more_url, page),
        "list_kind": "project",
    }
    return render(request, "chat/project.html", context, status=400 if form.errors else 200)


@require_POST
def project_conversation_create(request: HttpRequest, project_id: int) -> HttpResponse:
    """Start a conversation in a project, with the project's defaults."""
    project = access_project(request.user, project_id)
    conversation = conversations.conversation_create(owner=_user(request), project=project)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@require_http_methods(["GET", "POST"])
def project_delete(request: HttpRequest, project_id: int) -> HttpResponse:
    """Delete a project after confirmation; its conversations stay unless the user ticks deleting them too."""
    project = access_project(request.user, project_id)
    if request.method == "POST":
        with_conversations = request.POST.get("with_conversations") == "on"
        deleted = projects.project_delete(project=project, with_conversations=with_conversations)
        kept = "" if with_conversations else " Its conversations are still here, outside any project."
        gone = f" and its {deleted} conversation{'s' if deleted != 1 else ''}" if with_conversations else ""
        flash.success(request, f"Deleted the project “{project.name}”{gone}.{kept}")
        return redirect("chat:index")
    context = {
        **_sidebar(request),
        "project": project,
        "conversation_count": selectors.project_conversation_count(project=project),
    }
    return render(request, "chat/project_confirm_delete.html", context)
