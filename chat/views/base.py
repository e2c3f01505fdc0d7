"""What every page of the chat app shares: the signed-in user, the sidebar, the app page itself."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from chat import selectors
from chat.forms import (
    MessageForm,
    SettingsForm,
)
from chat.models import Conversation


def request_user(request: HttpRequest) -> User:
    """Return the signed-in user (LoginRequiredMiddleware guarantees there is one)."""
    assert isinstance(request.user, User)
    return request.user


def sidebar_context(request: HttpRequest) -> dict[str, object]:
    """Return what the sidebar of every page shows: pinned conversations, the first page of the rest (the
    others load as the user scrolls), and the projects."""
    user = request_user(request)
    page = selectors.sidebar_page(user=user)
    return {
        "pinned": selectors.pinned_list(user=user),
        "sidebar_page": page,
        "sidebar_next": next_page_url(reverse("chat:conversation_list"), page),
        "projects": selectors.project_list(user=user),
    }


def next_page_url(list_url: str, page: selectors.SidebarPage) -> str:
    """Return the address of the page after *page* of the list at *list_url*, or "" after the last."""
    return f"{list_url}?after={page.next_cursor}" if page.next_cursor else ""


def render_app(
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
        **sidebar_context(request),
        **topbar_context(request, conversation, settings_form=settings_form),
        "chat_messages": state["messages"] if state else [],
        "context_meter": state.get("context") if state else None,
        "message_form": message_form or MessageForm(),
    }
    return render(request, "chat/app.html", context, status=status)


def topbar_context(
    request: HttpRequest, conversation: Conversation | None, *, settings_form: SettingsForm | None = None
) -> dict[str, object]:
    """Return what the conversation page's top bar (chat/_topbar.html) shows: title, chips, its settings form
    and its share links."""
    if conversation is None:
        return {"conversation": None, "project": None, "settings_form": None, "shares": []}
    return {
        "conversation": conversation,
        "project": conversation.project,
        "settings_form": settings_form or SettingsForm.for_conversation(conversation),
        "shares": [
            (share, share_url(request, share.token))
            for share in selectors.conversation_share_list(conversation=conversation)
        ],
    }


def share_url(request: HttpRequest, token: str) -> str:
    return request.build_absolute_uri(reverse("chat:share", args=[token]))
