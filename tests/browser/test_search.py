"""The search palette (Ctrl+K) and the search page, in a real browser at laptop and phone sizes."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.factories import make_conversation, make_exchange

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SIZES = {
    "laptop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
              "has_touch": True},
}  # fmt: skip

FILLER = "A long answer about something else entirely, to push the thread far down. " * 12


def _long_conversation(owner: Any, title: str, hit_text: str) -> tuple[Any, int]:
    """A conversation of 20 turns whose second question holds *hit_text*; return it and that message's id."""
    conversation = make_conversation(owner, title=title)
    make_exchange(conversation, "Hello there", FILLER)
    hit, _ = make_exchange(conversation, hit_text, FILLER)
    for n in range(18):
        make_exchange(conversation, f"Question {n}", FILLER)
    return conversation, hit.pk


def _in_view(page: Any, message_id: int) -> bool:
    return bool(
        page.evaluate(
            """(id) => {
                const r = document.getElementById(`message-${id}`).getBoundingClientRect();
                const t = document.getElementById("thread").getBoundingClientRect();
                return r.bottom > t.top && r.top < t.bottom;
            }""",
            message_id,
        )
    )


@pytest.mark.parametrize("size", SIZES)
def test_ctrl_k_type_arrows_and_enter_land_on_the_message(
    size: str, user_page: Any, alice_user: Any, bob_user: Any
) -> None:
    first, first_hit = _long_conversation(alice_user, "Airships", "Tell me about the zeppelin hangar")
    second, second_hit = _long_conversation(
        alice_user, "History", 'Was the <img src=x onerror="window.__xss++"> zeppelin safe?'
    )
    make_exchange(make_conversation(bob_user, title="Bob's zeppelin"), "zeppelin secrets", "zeppelin")
    current = make_conversation(alice_user, title="Somewhere else")
    page = user_page(alice_user, **SIZES[size])
    ChatPage(page).open(current.pk)

    page.keyboard.press("Control+k")
    palette = page.locator("dialog.palette")
    expect(palette).to_be_visible()
    expect(palette.locator("input[name=q]")).to_be_focused()
    page.keyboard.type("zeppe")
    options = palette.locator("[role=option]")
    expect(options).to_have_count(2)  # Alice's two messages; Bob's never
    expect(palette).not_to_contain_text("Bob")
    expect(options.nth(0)).to_have_attribute("aria-selected", "true")
    expect(options.nth(0).locator("mark")).to_have_text("zeppelin")
    expect(palette).to_contain_text('Was the <img src=x onerror="window.__xss++"> zeppelin safe?')
    expect(palette.locator("mark")).to_have_count(2)  # the marks are the only markup from the server

    page.keyboard.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    chosen = options.nth(1).locator("a").get_attribute("href")
    target = {
        f"/c/{first.pk}/#message-{first_hit}": first_hit,
        f"/c/{second.pk}/#message-{second_hit}": second_hit,
    }
    assert chosen in target
    page.keyboard.press("Enter")

    page.wait_for_url(f"**{chosen}")
    ChatPage(page).wait_connected()
    message = page.locator(f"#message-{target[chosen]}")
    expect(message).to_have_class("message message-user status-done is-hit")
    page.wait_for_timeout(300)  # the live thread has settled: it must not have scrolled away to the end
    assert _in_view(page, target[chosen])
    assert page.evaluate("() => window.__xss") == 0 and page.dialogs == []

    page.keyboard.press("Control+k")
    expect(palette).to_be_visible()
    page.keyboard.press("Escape")
    expect(palette).to_be_hidden()


def test_the_sidebar_search_opens_the_palette_on_a_phone(user_page: Any, alice_user: Any) -> None:
    conversation, hit = _long_conversation(alice_user, "Airships", "Tell me about the zeppelin hangar")
    page = user_page(alice_user, **SIZES["phone"])
    ChatPage(page).open(make_conversation(alice_user).pk)
    page.click(".topbar [data-toggle-sidebar]")
    page.click("[data-testid=search]")
    palette = page.locator("dialog.palette")
    expect(palette).to_be_visible()
    page.keyboard.press("Escape")  # closes the palette (not the menu beneath it)
    expect(palette).to_be_hidden()
    page.keyboard.press("Control+k")
    palette.locator("input[name=q]").fill("hangar")
    expect(page.locator("dialog.palette [role=option]")).to_have_count(1)
    page.locator("dialog.palette [role=option] a").click()
    page.wait_for_url(f"**/c/{conversation.pk}/#message-{hit}")
    expect(page.locator(f"#message-{hit}")).to_have_class("message message-user status-done is-hit")


def test_without_javascript_the_search_page_finds_and_links_to_the_message(
    user_page: Any, alice_user: Any
) -> None:
    conversation, hit = _long_conversation(alice_user, "Airships", "Tell me about the zeppelin hangar")
    page = user_page(alice_user, java_script_enabled=False, viewport={"width": 1280, "height": 800})
    page.goto("/")
    page.click("[data-testid=search]")  # a plain link without JavaScript
    page.fill("input[name=q]", "zeppelin hang")
    page.click("form[role=search] button[type=submit]")
    expect(page.locator(".search-hit")).to_have_count(1)
    expect(page.locator(".search-hit mark")).to_have_text(["zeppelin", "hangar"])
    page.click(".search-hit")
    page.wait_for_url(f"**/c/{conversation.pk}/#message-{hit}")
    assert _in_view(page, hit)
    outline = page.eval_on_selector(f"#message-{hit} > .bubble", "e => getComputedStyle(e).boxShadow")
    assert outline != "none"  # marked by the address alone
