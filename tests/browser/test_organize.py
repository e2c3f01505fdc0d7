"""Organize, in the browser, on a laptop and on a phone: pin, archive and restore, a project whose defaults a
new conversation inherits, the sidebar that loads more as it scrolls and follows the user's other tabs, and
all of it from the keyboard alone."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from chat.models import Conversation, Project
from chat.services.conversations import conversation_pin
from chat.services.messages import message_send
from gptoss_web.devtools.stack import Stack
from tests.browser.chat_page import fits_the_width
from tests.browser.test_reading import from_the_top, tab_through
from tests.factories import make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

VIEWS = {
    "laptop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
              "has_touch": True},
}  # fmt: skip
UNREAD = re.compile(r"\bunread\b")


@pytest.fixture(params=list(VIEWS))
def view(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(VIEWS[request.param])


def phone(view: dict[str, Any]) -> bool:
    return bool(view["viewport"]["width"] < 800)


def open_sidebar(page: Any) -> None:
    """Open the phone's menu (on a laptop the sidebar is always there)."""
    button = page.locator(".topbar [data-toggle-sidebar]")
    if button.is_visible() and button.get_attribute("aria-expanded") != "true":
        button.click()
    expect(page.locator("#sidebar")).to_be_in_viewport()


def row(page: Any, title: str, where: str = "#sidebar") -> Any:
    return page.locator(f"{where} .conversation-row", has_text=title)


def act(page: Any, title: str, action: str) -> None:
    """Open *title*'s ⋯ menu in the sidebar and press *action* (Pin, Unpin, Archive)."""
    target = row(page, title)
    target.locator("summary").click()
    target.get_by_role("button", name=action, exact=True).click()


def test_pin_moves_a_conversation_to_pinned_and_archive_takes_it_out_until_restored(
    user_page: Any, alice_user: Any, view: dict[str, Any], live: Stack
) -> None:
    make_conversation(alice_user, title="Alpha")
    make_conversation(alice_user, title="Beta")
    page = user_page(alice_user, **view)
    page.goto("/")
    open_sidebar(page)
    pinned = page.locator("#sidebar [data-role=pinned-section]")
    expect(pinned).to_be_hidden()

    act(page, "Alpha", "Pin")
    expect(pinned).to_be_visible()
    expect(pinned.locator(".conversation-row")).to_have_count(1)
    expect(pinned).to_contain_text("Alpha")
    expect(page.locator("#sidebar [data-role=recent] .conversation-row", has_text="Alpha")).to_have_count(0)
    assert Conversation.objects.get(title="Alpha").pinned_at is not None
    assert fits_the_width(page)

    act(page, "Alpha", "Unpin")
    expect(pinned).to_be_hidden()
    expect(page.locator("#sidebar [data-role=recent] .conversation-row", has_text="Alpha")).to_have_count(1)

    act(page, "Beta", "Archive")
    expect(row(page, "Beta")).to_have_count(0)
    assert Conversation.objects.get(title="Beta").archived_at is not None
    page.locator("#sidebar .archived-link").click()
    page.wait_for_url("**/archived/")
    archived = row(page, "Beta", "main")
    expect(archived).to_contain_text("Archived")
    archived.locator("summary").click()
    archived.get_by_role("button", name="Restore").click()
    expect(row(page, "Beta", "main")).to_have_count(0)  # the list reloads without it
    open_sidebar(page)
    expect(row(page, "Beta")).to_have_count(1)
    assert Conversation.objects.get(title="Beta").archived_at is None


def test_a_new_conversation_in_a_project_inherits_its_defaults_and_moves_out(
    user_page: Any, alice_user: Any, view: dict[str, Any], live: Stack
) -> None:
    loose = make_conversation(alice_user, title="Loose notes")
    page = user_page(alice_user, **view)
    page.goto("/")
    open_sidebar(page)
    page.get_by_role("link", name="+ New project").click()
    page.wait_for_url("**/projects/new/")
    page.get_by_role("textbox", name="Name").fill("Migration")
    page.get_by_role("textbox", name="Instructions").fill("We move billing from PHP to Go.")
    page.locator("[data-role=project-form] label", has_text="High").click()
    page.get_by_role("button", name="Create project").click()
    project = Project.objects.get(owner=alice_user)
    page.wait_for_url(f"**/p/{project.pk}/")
    expect(page.get_by_role("heading", name="Migration", level=1)).to_be_visible()
    assert fits_the_width(page)

    page.get_by_role("button", name="New conversation in this project").click()
    page.wait_for_url("**/c/*/")
    conversation = Conversation.objects.get(owner=alice_user, project=project)
    assert conversation.reasoning_effort == "high"
    if not phone(view):  # a phone's top bar leaves the chips out
        expect(page.locator(".topbar-actions .chip", has_text="High")).to_be_visible()
        expect(page.locator(".topbar-actions a.chip", has_text="Migration")).to_have_attribute(
            "href", f"/p/{project.pk}/"
        )

    # Move the loose one into the project from its row menu; the project page lists both.
    open_sidebar(page)
    target = row(page, "Loose notes")
    target.locator("summary").click()
    target.get_by_label("Project").select_option(label="Migration")
    target.get_by_role("button", name="Move").click()
    expect(row(page, "Loose notes").locator(".row-tag", has_text="Migration")).to_be_visible()
    loose.refresh_from_db()
    assert loose.project_id == project.pk
    page.goto(f"/p/{project.pk}/")
    expect(page.locator("main .conversation-row")).to_have_count(2)


def test_the_sidebar_loads_more_as_it_scrolls_never_all_at_once(
    user_page: Any, alice_user: Any, view: dict[str, Any], live: Stack
) -> None:
    now = timezone.now()
    Conversation.objects.bulk_create(
        Conversation(
            owner=alice_user, model_name="tiny", title=f"Chat {i:02}", updated_at=now - timedelta(hours=i)
        )
        for i in range(80)
    )
    page = user_page(alice_user, **view)
    page.goto("/")
    open_sidebar(page)
    rows = page.locator("#sidebar [data-role=recent] .conversation-row")
    expect(rows).to_have_count(30)
    heads = page.locator("#sidebar [data-role=recent] .group-head")
    expect(heads.first).to_have_text("Today")
    for expected in (60, 80):
        page.locator("#sidebar [data-role=more]").scroll_into_view_if_needed()
        expect(rows).to_have_count(expected)
    expect(page.locator("#sidebar [data-role=more]")).to_have_count(0)  # the last page has no link
    ids = page.eval_on_selector_all(
        "#sidebar [data-role=recent] .conversation-row", "rows => rows.map(r => r.dataset.conversation)"
    )
    assert len(ids) == len(set(ids)) == 80
    titles = rows.locator(".title").all_inner_texts()
    assert titles == [f"Chat {i:02}" for i in range(80)]  # newest first, nothing skipped or repeated
    # Each group is headed once, in order, whatever page brought its rows.
    assert heads.all_inner_texts() == ["Today", "Previous 7 days"]


def test_every_organize_action_works_from_the_keyboard_alone(
    user_page: Any, alice_user: Any, view: dict[str, Any], live: Stack
) -> None:
    now = timezone.now()
    Conversation.objects.bulk_create(
        Conversation(
            owner=alice_user,
            model_name="tiny",
            title=f"Filler {i:02}",
            updated_at=now - timedelta(days=9, hours=i),
        )
        for i in range(40)
    )
    make_conversation(alice_user, title="Keyboard chat")
    page = user_page(alice_user, **view)
    page.goto("/")
    if phone(view):
        page.locator(".topbar [data-toggle-sidebar]").focus()
        page.keyboard.press("Enter")
    else:
        from_the_top(page)
    stops = tab_through(page, 40)
    assert any(s.startswith("summary|Actions for “Keyboard chat”|⋯") for s in stops), "\n".join(stops)

    # Pin it: its ⋯ button, Enter opens the menu, Tab to Pin, Enter.
    target = row(page, "Keyboard chat")
    target.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(target.locator(".row-menu-body")).to_be_visible()
    page.keyboard.press("Tab")
    expect(target.get_by_role("button", name="Pin", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(
        page.locator("#sidebar [data-role=pinned] .conversation-row", has_text="Keyboard chat")
    ).to_be_visible()
    expect(page.locator("#sidebar [data-role=pinned] summary")).to_be_focused()  # the focus stays with it

    # Escape closes an open menu and gives the focus back to its button.
    page.keyboard.press("Enter")
    pinned_row = row(page, "Keyboard chat")
    expect(pinned_row.locator(".row-menu-body")).to_be_visible()
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    expect(pinned_row.locator(".row-menu-body")).to_be_hidden()
    expect(pinned_row.locator("summary")).to_be_focused()

    # Archive from the keyboard: the focus goes on to the next row.
    page.keyboard.press("Enter")
    for _ in range(4):  # Unpin, the project list, Move, Archive
        page.keyboard.press("Tab")
    expect(pinned_row.get_by_role("button", name="Archive")).to_be_focused()
    page.keyboard.press("Enter")
    expect(row(page, "Keyboard chat")).to_have_count(0)
    assert Conversation.objects.get(title="Keyboard chat").archived_at is not None

    # "Show more" from the keyboard loads the next page and moves the focus to its first row.
    more = page.locator("#sidebar [data-role=more]")
    more.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#sidebar [data-role=recent] .conversation-row")).to_have_count(40)
    focused = page.evaluate("() => document.activeElement.closest('.conversation-row')?.dataset.conversation")
    assert focused is not None

    # A project from the keyboard: the link, the form, the button.
    page.locator("#sidebar .new-project").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/projects/new/")
    page.get_by_role("textbox", name="Name").focus()
    page.keyboard.type("Keys only")
    page.get_by_role("button", name="Create project").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/p/*/")
    page.get_by_role("button", name="New conversation in this project").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/c/*/")
    assert Conversation.objects.filter(project__name="Keys only").count() == 1


def test_the_sidebar_follows_the_users_other_tabs_and_marks_a_finished_reply(
    user_page: Any, alice_user: Any, view: dict[str, Any], live: Stack
) -> None:
    elsewhere = make_conversation(alice_user, title="Elsewhere")
    Conversation.objects.filter(pk=elsewhere.pk).update(updated_at=timezone.now() - timedelta(days=30))
    here = make_conversation(alice_user, title="Here")
    page = user_page(alice_user, **view)
    page.goto(f"/c/{here.pk}/")
    page.wait_for_function("() => window.gptossChat && window.gptossChat.connected()")
    open_sidebar(page)
    expect(row(page, "Elsewhere")).to_have_attribute("data-group", "older")

    # Another tab pins it; this one shows it under Pinned.
    conversation_pin(conversation=elsewhere, pinned=True)
    expect(
        page.locator("#sidebar [data-role=pinned] .conversation-row", has_text="Elsewhere")
    ).to_be_visible()
    conversation_pin(conversation=elsewhere, pinned=False)
    expect(page.locator("#sidebar [data-role=pinned-section]")).to_be_hidden()

    # A new conversation made elsewhere appears, and its reply finishing marks it until it is opened.
    make_conversation(alice_user, title="Fresh one")
    expect(row(page, "Fresh one")).to_be_visible()
    message_send(conversation=elsewhere, text="Hello from the other tab")
    moved = row(page, "Elsewhere")
    expect(moved).to_have_class(UNREAD, timeout=30_000)
    expect(moved).to_have_attribute("data-group", "today")
    first = page.locator("#sidebar [data-role=recent] .conversation-row").first
    expect(first).to_contain_text("Elsewhere")  # the top of Today
    moved.locator("a").first.click()
    page.wait_for_url(f"**/c/{elsewhere.pk}/")
    open_sidebar(page)
    expect(row(page, "Elsewhere")).not_to_have_class(UNREAD)
    expect(row(page, "Fresh one")).to_be_visible()
