"""The profile page and a conversation's Settings popover, on a laptop and on a phone: what a user sets, what
the pages then look like, and what a mistake tells them."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Profile
from gptoss_web.devtools.stack import Stack
from tests.browser.chat_page import ChatPage, fits_the_width
from tests.browser.conftest import sign_in
from tests.browser.test_reading import open_user_menu
from tests.factories import make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

VIEWS = {
    "laptop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
              "has_touch": True},
}  # fmt: skip
LIGHT_BG, DARK_BG = "rgb(255, 255, 255)", "rgb(21, 23, 26)"  # --bg in app.css and dark.css


@pytest.fixture(params=list(VIEWS))
def view(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(VIEWS[request.param])


def background(page: Any) -> str:
    return str(page.evaluate("() => getComputedStyle(document.body).backgroundColor"))


def test_the_profile_page_sets_instructions_defaults_theme_and_notifications(
    user_page: Any, alice_user: Any, view: dict[str, Any], browser: Any, live: Stack
) -> None:
    page = user_page(alice_user, color_scheme="light", permissions=["notifications"], **view)
    page.goto("/")
    assert background(page) == LIGHT_BG
    open_user_menu(page)
    page.get_by_role("link", name="Profile").click()
    page.wait_for_url("**/settings/profile/")
    expect(page.get_by_role("heading", name="Profile", level=1)).to_be_visible()
    assert fits_the_width(page)

    page.get_by_label("About you").fill("I look after the billing service.")
    page.get_by_label("How to answer").fill("Be brief. Use metric units.")
    page.locator("label", has_text="High").click()
    page.locator("label", has_text="Dark").click()
    page.get_by_label("Notify me when an answer is ready while I look at another tab").check()
    page.get_by_role("button", name="Save profile").click()

    expect(page.get_by_role("status").first).to_have_text(
        "Profile saved. New conversations start with these settings."
    )
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert background(page) == DARK_BG  # though the system prefers light
    assert fits_the_width(page)
    expect(page.get_by_label("About you")).to_have_value("I look after the billing service.")
    expect(page.get_by_label("Notify me when an answer is ready while I look at another tab")).to_be_checked()
    profile = Profile.objects.get(user=alice_user)
    assert (profile.reasoning_effort, profile.theme, profile.notifications) == ("high", "dark", True)

    # The user menu's switch shows the profile's setting, and switching it off there saves the profile.
    open_user_menu(page)
    switch = page.locator("[data-role=notify-switch]")
    expect(switch).to_be_checked()
    switch.uncheck()
    page.wait_for_function("() => document.documentElement.dataset.notifications === 'off'")
    profile.refresh_from_db()
    assert profile.notifications is False

    # A new conversation starts with the profile's effort.
    page.goto("/")
    if view["viewport"]["width"] < 800:
        page.locator(".topbar [data-toggle-sidebar]").click()
    page.get_by_test_id("new-conversation").click()
    page.wait_for_url("**/c/*/")
    expect(page.locator(".chip[title='Reasoning effort']")).to_have_text("High")

    # The theme is the server's doing: a browser without JavaScript gets it on the first paint too.
    plain = browser.new_context(
        base_url=live.base_url, java_script_enabled=False, color_scheme="light", **view
    )
    try:
        bare = plain.new_page()
        sign_in(bare, alice_user.username)
        assert background(bare) == DARK_BG
    finally:
        plain.close()


def test_the_settings_popover_sets_sampling_and_says_what_is_out_of_range(
    user_page: Any, alice_user: Any, view: dict[str, Any]
) -> None:
    conversation = make_conversation(alice_user, title="Sampling")
    page = user_page(alice_user, **view)
    ChatPage(page).open(conversation.pk)
    panel = page.locator(".settings-panel")
    panel.locator("summary").click()
    body = panel.locator(".popover-body")
    expect(body).to_be_visible()
    temperature, top_p, limit = (
        body.get_by_label("Temperature"),
        body.get_by_label("Top-p"),
        body.get_by_label("Answer length limit"),
    )
    budget = int(limit.get_attribute("max"))  # the model's own answer budget, as the server serves it
    expect(body.get_by_text(f"16 to {budget:,} tokens, reasoning included")).to_be_attached()
    for box in (temperature, top_p, limit):
        expect(box).to_have_value("")  # blank: the model's defaults

    temperature.fill("0.4")
    top_p.fill("0.8")
    limit.fill("300")
    body.get_by_role("button", name="Save settings").scroll_into_view_if_needed()
    expect(body.get_by_role("button", name="Save settings")).to_be_in_viewport()  # reachable on a phone
    body.get_by_role("button", name="Save settings").click()
    expect(page.locator(".flash")).to_contain_text("Settings saved.")
    conversation.refresh_from_db()
    assert (conversation.temperature, conversation.top_p, conversation.max_answer_tokens) == (0.4, 0.8, 300)
    panel.locator("summary").click()
    expect(temperature).to_have_value("0.4")
    expect(top_p).to_have_value("0.8")
    expect(limit).to_have_value("300")

    # The browser itself stops a value out of range...
    temperature.fill("3")
    body.get_by_role("button", name="Save settings").click()
    assert temperature.evaluate("(box) => box.validity.rangeOverflow") is True
    assert page.url.endswith(f"/c/{conversation.pk}/")

    # ...and the server says the same to any client that sends one, with the popover open on it.
    page.evaluate("() => document.querySelector('.settings-panel form').noValidate = true")
    limit.fill(str(budget + 1))
    body.get_by_role("button", name="Save settings").click()
    expect(body).to_be_visible()
    expect(body.locator(".field-error")).to_have_text(
        [
            "Temperature must be between 0 and 2; leave it blank for the default.",
            f"Answer length limit must be between 16 and {budget:,} tokens; leave it blank for the default.",
        ]
    )
    expect(page.locator(".settings-panel").get_by_label("Temperature")).to_have_value("3")  # kept as typed
    assert fits_the_width(page)
    conversation.refresh_from_db()
    assert (conversation.temperature, conversation.max_answer_tokens) == (0.4, 300)  # nothing saved
    assert Conversation.objects.count() == 1
