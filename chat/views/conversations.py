"""The chat page: conversations, their messages and branches, and search."""

from __future__ import annotations

from django.contrib import messages as flash
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import search, selectors
from chat.access import access_conversation
from chat.errors import ChatError
from chat.forms import (
    MessageForm,
    RenameForm,
    SearchForm,
    SettingsForm,
)
from chat.services import (
    branches,
    conversations,
    messages,
)
from chat.views.base import render_app, request_user, sidebar_context, topbar_context


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Show the conversation list and a composer that starts a new conversation."""
    return render_app(request, None)


@require_POST
def conversation_create(request: HttpRequest) -> HttpResponse:
    """Start a conversation; with text, send it as the first message."""
    form = MessageForm(request.POST)
    text = request.POST.get("text", "")
    if text and not form.is_valid():
        return render_app(request, None, message_form=form, status=400)
    try:
        if text:
            conversation, _, _ = messages.conversation_start(
                owner=request_user(request), text=form.cleaned_data["text"]
            )
        else:
            conversation = conversations.conversation_create(owner=request_user(request))
    except ChatError as error:
        form.add_error("text", str(error))
        return render_app(request, None, message_form=form, status=409)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@require_GET
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = access_conversation(request.user, conversation_id)
    return render_app(request, conversation)


@never_cache
@require_GET
def conversation_topbar(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The conversation page's top bar alone, for the page that started the conversation (static/js/chat/
    main.js): it needs the bar, not a whole page rendered again."""
    conversation = access_conversation(request.user, conversation_id)
    return render(request, "chat/_topbar.html", topbar_context(request, conversation))


@require_POST
def message_create(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Send a message without JavaScript; the typed text is kept on any error."""
    conversation = access_conversation(request.user, conversation_id)
    form = MessageForm(request.POST)
    if not form.is_valid():
        return render_app(request, conversation, message_form=form, status=400)
    try:
        messages.message_send(conversation=conversation, text=form.cleaned_data["text"])
    except ChatError as error:
        form.add_error("text", str(error))
        return render_app(request, conversation, message_form=form, status=409)
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
        return render_app(request, conversation, settings_form=form, status=400)
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
        {"conversation": conversation, **sidebar_context(request)},
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
    user = request_user(request)
    context = {
        **sidebar_context(request),
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
    hits = _search(request_user(request), text, include_reasoning)
    return JsonResponse({"query": text, "hits": [search.hit_json(hit) for hit in hits]})
