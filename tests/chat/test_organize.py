"""Organize: projects with their own defaults, pin, archive, move, and the sidebar's keyset pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError
from django.test import Client
from django.utils import timezone

from chat import selectors
from chat.errors import ChatError
from chat.models import MAX_PINNED, Conversation, Project
from chat.search import search
from chat.services.conversations import (
    conversation_archive,
    conversation_create,
    conversation_move,
    conversation_pin,
)
from chat.services.profiles import profile_update
from chat.services.projects import ProjectNameTaken, project_create, project_delete, project_update
from tests.factories import make_conversation, make_exchange

pytestmark = pytest.mark.django_db

PROFILE = {"theme": "system", "notifications": False, "about_me": "", "answer_style": ""}


def _aged(conversation: Conversation, **ago: float) -> Conversation:
    """Set *conversation*'s last activity to the given time ago (timedelta arguments)."""
    conversation.updated_at = timezone.now() - timedelta(**ago)
    conversation.save(update_fields=["updated_at"])
    return conversation


# --- Projects -----------------------------------------------------------------------------------------------


def test_a_new_conversation_in_a_project_takes_the_projects_defaults_over_the_profiles(alice: Any) -> None:
    profile_update(user=alice, model_name="", reasoning_effort="low", enabled_tools=[], **PROFILE)
    project = project_create(owner=alice, name="Billing", reasoning_effort="high")
    inside = conversation_create(owner=alice, project=project)
    outside = conversation_create(owner=alice)
    assert (inside.project_id, inside.reasoning_effort) == (project.pk, "high")
    assert (outside.project_id, outside.reasoning_effort) == (None, "low")  # the profile's, as before


def test_what_a_project_leaves_blank_comes_from_the_profile(alice: Any) -> None:
    profile_update(user=alice, model_name="", reasoning_effort="low", enabled_tools=[], **PROFILE)
    project = project_create(owner=alice, name="Plain")
    assert conversation_create(owner=alice, project=project).reasoning_effort == "low"


def test_project_names_are_unique_per_owner_whatever_their_case(alice: Any, bob: Any) -> None:
    project_create(owner=alice, name="Billing")
    with pytest.raises(ProjectNameTaken, match="already have a project named"):
        project_create(owner=alice, name="  billing ")
    project_create(owner=bob, name="Billing")  # another user's folder may share the name
    with pytest.raises(ChatError, match="Give the project a name"):
        project_create(owner=alice, name="   ")


def test_renaming_onto_another_projects_name_is_refused(alice: Any) -> None:
    project_create(owner=alice, name="One")
    two = project_create(owner=alice, name="Two")
    with pytest.raises(ProjectNameTaken):
        project_update(project=two, name="ONE", instructions="", model_name="", reasoning_effort="",
                       enabled_tools=[])  # fmt: skip
    two.refresh_from_db()
    assert two.name == "Two"


def test_deleting_a_project_keeps_its_conversations_unless_asked(alice: Any) -> None:
    project = project_create(owner=alice, name="Keep")
    kept = conversation_create(owner=alice, project=project)
    assert project_delete(project=project) == 0
    kept.refresh_from_db()
    assert kept.project_id is None

    doomed_project = project_create(owner=alice, name="Drop")
    doomed = conversation_create(owner=alice, project=doomed_project)
    other = conversation_create(owner=alice)
    assert project_delete(project=doomed_project, with_conversations=True) == 1
    assert not Conversation.objects.filter(pk=doomed.pk).exists()
    assert Conversation.objects.filter(pk=other.pk).exists()


def test_a_project_deleted_any_other_way_leaves_its_conversations(alice: Any) -> None:
    """SET_NULL: the admin's or a bulk delete never takes conversations with it."""
    project = project_create(owner=alice, name="Admin deletes it")
    conversation = conversation_create(owner=alice, project=project)
    Project.objects.filter(pk=project.pk).delete()
    conversation.refresh_from_db()
    assert conversation.project_id is None


def test_moving_between_projects_and_out_keeps_the_conversations_settings(alice: Any, bob: Any) -> None:
    one = project_create(owner=alice, name="One", reasoning_effort="high")
    two = project_create(owner=alice, name="Two", reasoning_effort="low")
    conversation = conversation_create(owner=alice, project=one)
    conversation_move(conversation=conversation, project=two)
    conversation.refresh_from_db()
    assert (conversation.project_id, conversation.reasoning_effort) == (two.pk, "high")
    conversation_move(conversation=conversation, project=None)
    conversation.refresh_from_db()
    assert conversation.project_id is None
    with pytest.raises(ChatError, match="not yours"):
        conversation_move(conversation=conversation, project=project_create(owner=bob, name="Bob's"))


# --- Pin and archive ----------------------------------------------------------------------------------------


def test_pinned_conversations_leave_the_pages_for_the_pinned_list(alice: Any) -> None:
    first, second = make_conversation(alice, title="first"), make_conversation(alice, title="second")
    conversation_pin(conversation=first, pinned=True)
    assert [r.conversation.pk for r in selectors.pinned_list(user=alice)] == [first.pk]
    assert [r.conversation.pk for r in selectors.sidebar_page(user=alice).rows] == [second.pk]
    conversation_pin(conversation=first, pinned=False)
    assert selectors.pinned_list(user=alice) == []
    assert {r.conversation.pk for r in selectors.sidebar_page(user=alice).rows} == {first.pk, second.pk}


def test_pins_are_capped(alice: Any) -> None:
    conversations = [Conversation(owner=alice, model_name="tiny") for _ in range(MAX_PINNED + 1)]
    Conversation.objects.bulk_create(conversations)
    for conversation in conversations[:MAX_PINNED]:
        conversation_pin(conversation=conversation, pinned=True)
    with pytest.raises(ChatError, match="Unpin one first"):
        conversation_pin(conversation=conversations[-1], pinned=True)


def test_archiving_unpins_leaves_the_sidebar_and_restoring_brings_it_back(alice: Any) -> None:
    conversation = make_conversation(alice, title="old plans")
    make_exchange(conversation, "what about the plans", "they are archived")
    conversation_pin(conversation=conversation, pinned=True)
    conversation_archive(conversation=conversation, archived=True)
    conversation.refresh_from_db()
    assert conversation.pinned_at is None and conversation.archived_at is not None
    assert selectors.pinned_list(user=alice) == [] and selectors.sidebar_page(user=alice).rows == []
    assert [r.conversation.pk for r in selectors.archived_page(user=alice).rows] == [conversation.pk]
    hits = search(user=alice, text="plans")
    assert hits and all(hit.archived for hit in hits)  # search still finds it, marked
    conversation_archive(conversation=conversation, archived=False)
    assert [r.conversation.pk for r in selectors.sidebar_page(user=alice).rows] == [conversation.pk]
    assert not any(hit.archived for hit in search(user=alice, text="plans"))


def test_the_database_refuses_a_conversation_both_pinned_and_archived(alice: Any) -> None:
    conversation = make_conversation(alice)
    now = timezone.now()
    with pytest.raises(IntegrityError):
        Conversation.objects.filter(pk=conversation.pk).update(pinned_at=now, archived_at=now)


# --- The sidebar's pages ------------------------------------------------------------------------------------


def test_rows_are_grouped_today_previous_7_days_older_each_heading_once(alice: Any) -> None:
    _aged(make_conversation(alice, title="ancient"), days=40)
    _aged(make_conversation(alice, title="last week"), days=3)
    _aged(make_conversation(alice, title="also last week"), days=2)
    make_conversation(alice, title="now")
    rows = selectors.sidebar_page(user=alice).rows
    assert [(r.conversation.title, r.group, r.heading) for r in rows] == [
        ("now", "today", "Today"),
        ("also last week", "week", "Previous 7 days"),
        ("last week", "week", ""),
        ("ancient", "older", "Older"),
    ]


def test_a_page_that_continues_a_group_does_not_head_it_again(alice: Any) -> None:
    for i in range(4):
        _aged(make_conversation(alice, title=f"c{i}"), days=3, minutes=i)
    first = selectors.sidebar_page(user=alice, size=2)
    second = selectors.sidebar_page(user=alice, after=first.next_cursor, size=2)
    assert [r.heading for r in first.rows] == ["Previous 7 days", ""]
    assert [r.heading for r in second.rows] == ["", ""]
    assert second.next_cursor is None


def test_keyset_pages_never_skip_or_repeat_a_row_while_new_ones_arrive(alice: Any) -> None:
    """Conversations created or updated between pages move above the cursor: the pages that follow still
    hold every older row exactly once, ties in updated_at broken by id."""
    same_moment = timezone.now() - timedelta(days=1)
    originals = [make_conversation(alice, title=f"c{i}") for i in range(23)]
    for conversation in originals[:8]:  # a run of equal timestamps across page boundaries
        conversation.updated_at = same_moment
        conversation.save(update_fields=["updated_at"])
    seen: list[int] = []
    after = None
    while True:
        page = selectors.sidebar_page(user=alice, after=after, size=5)
        seen += [r.conversation.pk for r in page.rows]
        make_conversation(alice, title="arrived meanwhile")  # new: at the top, above the cursor
        if len(seen) > 10:
            bumped = Conversation.objects.get(pk=seen[0])  # an already listed one replied again
            bumped.updated_at = timezone.now()
            bumped.save(update_fields=["updated_at"])
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert len(seen) == len(set(seen))
    assert set(seen) == {c.pk for c in originals}


def test_cursors_round_trip_and_nonsense_is_none() -> None:
    moment = timezone.now()
    cursor = selectors.Cursor(moment, 42)
    assert selectors.Cursor.parse(str(cursor)) == cursor
    for bad in ["", "x.1", "1.", ".1", "1.2.3", "9" * 30 + ".1", "-5.1"]:
        assert selectors.Cursor.parse(bad) is None


def test_ephemeral_api_conversations_are_never_listed(alice: Any) -> None:
    Conversation.objects.create(owner=alice, model_name="tiny", ephemeral=True)
    assert selectors.sidebar_page(user=alice).rows == []


# --- Views --------------------------------------------------------------------------------------------------


def test_the_sidebar_shows_a_first_page_and_a_show_more_link_that_works_without_javascript(
    alice: Any, alice_client: Client
) -> None:
    Conversation.objects.bulk_create(
        Conversation(owner=alice, model_name="tiny", title=f"chat {i:02}", updated_at=timezone.now()
                     - timedelta(minutes=i)) for i in range(80)
    )  # fmt: skip
    page = alice_client.get("/").content.decode()
    assert page.count('class="conversation-row') == selectors.SIDEBAR_PAGE
    assert "chat 00" in page and "chat 30" not in page
    start = page.index('data-role="more"')
    href = page[page.rindex('href="', 0, start) + 6 : page.index('"', page.rindex('href="', 0, start) + 6)]
    assert href.startswith("/conversations/?after=")
    more = alice_client.get(href.replace("&amp;", "&"))
    assert more.status_code == 200
    text = more.content.decode()
    assert "chat 30" in text and "chat 59" in text and "chat 60" not in text
    fragment = alice_client.get(href.replace("&amp;", "&") + "&fragment=1").content.decode()
    assert "<html" not in fragment and fragment.count('class="conversation-row') == 30
    assert alice_client.get("/conversations/?after=garbage").status_code == 404


def test_row_actions_pin_archive_move_without_javascript(alice: Any, alice_client: Client) -> None:
    conversation = make_conversation(alice, title="row actions")
    project = project_create(owner=alice, name="Folder")
    response = alice_client.post(f"/c/{conversation.pk}/pin/", {"pinned": "1", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    conversation.refresh_from_db()
    assert conversation.pinned_at is not None
    alice_client.post(f"/c/{conversation.pk}/move/", {"project": str(project.pk)})
    conversation.refresh_from_db()
    assert conversation.project_id == project.pk
    response = alice_client.post(
        f"/c/{conversation.pk}/archive/", {"archived": "1", "next": "https://evil.test/"}
    )
    assert response["Location"] == f"/c/{conversation.pk}/"  # never off-site
    conversation.refresh_from_db()
    assert conversation.archived_at is not None
    archived = alice_client.get("/archived/").content.decode()
    assert "row actions" in archived and "Restore" in archived
    json_answer = alice_client.post(
        f"/c/{conversation.pk}/archive/", {"archived": "0"}, headers={"Accept": "application/json"}
    )
    assert json_answer.json() == {"conversation": conversation.pk}


def test_a_refused_pin_says_why(alice: Any, alice_client: Client) -> None:
    conversations = [Conversation(owner=alice, model_name="tiny") for _ in range(MAX_PINNED + 1)]
    Conversation.objects.bulk_create(conversations)
    Conversation.objects.filter(pk__in=[c.pk for c in conversations[:MAX_PINNED]]).update(
        pinned_at=timezone.now()
    )
    answer = alice_client.post(
        f"/c/{conversations[-1].pk}/pin/", {"pinned": "1"}, headers={"Accept": "application/json"}
    )
    assert answer.status_code == 409 and "Unpin one first" in answer.json()["error"]


def test_project_pages_create_edit_start_a_conversation_and_delete(alice: Any, alice_client: Client) -> None:
    response = alice_client.post(
        "/projects/new/",
        {
            "project-name": "Migration",
            "project-instructions": "We move to Go.",
            "project-reasoning_effort": "high",
        },
    )
    project = Project.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/p/{project.pk}/"
    page = alice_client.get(f"/p/{project.pk}/").content.decode()
    assert "Migration" in page and "We move to Go." in page
    taken = alice_client.post("/projects/new/", {"project-name": "migration"})
    assert taken.status_code == 400 and "already have a project named" in taken.content.decode()
    started = alice_client.post(f"/p/{project.pk}/new/")
    conversation = Conversation.objects.get(owner=alice, project=project)
    assert started["Location"] == f"/c/{conversation.pk}/" and conversation.reasoning_effort == "high"
    alice_client.post(
        f"/p/{project.pk}/",
        {"project-name": "Migration 2", "project-instructions": "", "project-reasoning_effort": ""},
    )
    project.refresh_from_db()
    assert project.name == "Migration 2"
    assert "1 conversation" in alice_client.get(f"/p/{project.pk}/delete/").content.decode()
    alice_client.post(f"/p/{project.pk}/delete/")
    assert not Project.objects.filter(pk=project.pk).exists()
    assert Conversation.objects.filter(pk=conversation.pk, project=None).exists()


@pytest.mark.parametrize(
    ("method", "url", "data"),
    [
        ("get", "/p/{p}/", {}),
        ("get", "/p/{p}/?fragment=1", {}),
        ("post", "/p/{p}/", {"project-name": "mine now"}),
        ("post", "/p/{p}/new/", {}),
        ("get", "/p/{p}/delete/", {}),
        ("post", "/p/{p}/delete/", {"with_conversations": "on"}),
        ("get", "/c/{c}/row/", {}),
        ("post", "/c/{c}/pin/", {"pinned": "1"}),
        ("post", "/c/{c}/archive/", {"archived": "1"}),
        ("post", "/c/{c}/move/", {"project": ""}),
        ("post", "/c/{mine}/move/", {"project": "{p}"}),  # the stranger's own conversation, alice's project
    ],
)
def test_a_stranger_gets_404_for_every_project_url_and_conversation_action(
    alice: Any, bob: Any, bob_client: Client, method: str, url: str, data: dict[str, str]
) -> None:
    project = project_create(owner=alice, name="Private")
    conversation = conversation_create(owner=alice, project=project)
    mine = make_conversation(bob)
    ids = {"p": project.pk, "c": conversation.pk, "mine": mine.pk}
    data = {k: v.format(**ids) for k, v in data.items()}
    response = getattr(bob_client, method)(url.format(**ids), data)
    assert response.status_code == 404
    project.refresh_from_db()
    conversation.refresh_from_db()
    mine.refresh_from_db()
    assert project.name == "Private" and conversation.pinned_at is None and conversation.archived_at is None
    assert mine.project_id is None
    assert Conversation.objects.filter(project=project).count() == 1


def test_the_row_actions_need_the_csrf_token(alice: Any) -> None:
    conversation = make_conversation(alice)
    project = project_create(owner=alice, name="Guarded")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    for url, data in [
        (f"/c/{conversation.pk}/pin/", {"pinned": "1"}),
        (f"/c/{conversation.pk}/archive/", {"archived": "1"}),
        (f"/c/{conversation.pk}/move/", {"project": str(project.pk)}),
        ("/projects/new/", {"project-name": "Forged"}),
        (f"/p/{project.pk}/delete/", {}),
    ]:
        assert client.post(url, data).status_code == 403
    conversation.refresh_from_db()
    assert (
        conversation.pinned_at is None and conversation.archived_at is None and conversation.project is None
    )
    assert Project.objects.filter(owner=alice).count() == 1


def test_anonymous_visitors_are_sent_to_sign_in(alice: Any) -> None:
    project = project_create(owner=alice, name="P")
    for url in ["/conversations/", "/archived/", "/projects/new/", f"/p/{project.pk}/"]:
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
