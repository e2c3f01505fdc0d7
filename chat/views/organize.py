"""Organize: the sidebar's pages, pin, archive, move, projects."""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import selectors
from chat.access import access_conversation, access_project
from chat.errors import ChatError
from chat.forms import (
    ProjectForm,
)
from chat.models import Conversation
from chat.services import (
    conversations,
    projects,
)
from chat.views.base import next_page_url, request_user, sidebar_context


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
        "next_url": next_page_url(more_url, page),
        "projects": selectors.project_list(user=request_user(request)),
        "list_kind": kind,
        "back_url": more_url,
    }
    return render(request, "chat/_rows.html", context)


@require_GET
def conversation_list_page(request: HttpRequest) -> HttpResponse:
    """The sidebar's next page: its rows alone for the infinite scroll (`?fragment=1`), else a page of its own
    with a "Show more" link (what the sidebar's link opens without JavaScript)."""
    user = request_user(request)
    after = _cursor(request)
    page = selectors.sidebar_page(user=user, after=after)
    if _wants_fragment(request):
        return _render_rows(request, page, reverse("chat:conversation_list"))
    context = {
        **sidebar_context(request),
        "page_title": "Conversations",
        "rows": page.rows,
        "next_url": next_page_url(reverse("chat:conversation_list"), page),
        "list_kind": "recent",
    }
    return render(request, "chat/conversation_list.html", context)


@require_GET
def archived_list_page(request: HttpRequest) -> HttpResponse:
    """The archived conversations, newest first: open one, or restore it to the sidebar."""
    page = selectors.archived_page(user=request_user(request), after=_cursor(request))
    more_url = reverse("chat:archived")
    if _wants_fragment(request):
        return _render_rows(request, page, more_url, kind="archived")
    context = {
        **sidebar_context(request),
        "page_title": "Archived",
        "rows": page.rows,
        "next_url": next_page_url(more_url, page),
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
        "projects": selectors.project_list(user=request_user(request)),
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
    user = request_user(request)
    form = ProjectForm.for_project(user, None, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = projects.project_create(owner=user, **form.cleaned_data)
        except ChatError as error:
            form.add_error("name", str(error))
        else:
            return redirect("chat:project", project_id=project.pk)
    context = {**sidebar_context(request), "form": form, "project": None}
    return render(request, "chat/project.html", context, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    """A project: its conversations (paged as the sidebar is), a new conversation in it, and its settings
    (POST saves them)."""
    user = request_user(request)
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
        **sidebar_context(request),
        "form": form,
        "project": project,
        "rows": page.rows,
        "next_url": next_page_url(more_url, page),
        "list_kind": "project",
    }
    return render(request, "chat/project.html", context, status=400 if form.errors else 200)


@require_POST
def project_conversation_create(request: HttpRequest, project_id: int) -> HttpResponse:
    """Start a conversation in a project, with the project's defaults."""
    project = access_project(request.user, project_id)
    conversation = conversations.conversation_create(owner=request_user(request), project=project)
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
        **sidebar_context(request),
        "project": project,
        "conversation_count": selectors.project_conversation_count(project=project),
    }
    return render(request, "chat/project_confirm_delete.html", context)
