"""What a browser must never allow: reading another user's conversation, or running injected script."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Message
from gptoss_web.devtools.tinymodel import XSS_ANSWER
from tests.browser.chat_page import ChatPage, wait_stored
from tests.factories import PASSWORD, make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Each payload, if it ever ran, bumps window.__xss or opens a dialog (both watched by the page's sentinel).
# The first line becomes the conversation title.
XSS_CORPUS = "\n".join(
    [
        '<img src=x onerror="window.__xss++">',
        "<script>window.__xss++</script>",
        '"><svg onload=window.__xss++>',
        '<iframe srcdoc="<script>parent.__xss++</script>"></iframe>',
        '<a href="javascript:window.__xss++">a link</a>',
        "[markdown link](javascript:window.__xss++)",
        "[data link](data:text/html,<script>alert(1)</script>)",
        "![remote image](https://evil.example/pixel.png)",
        '<details open ontoggle="window.__xss++">x</details>',
        '<style>@import url("https://evil.example/x.css");</style>',
        "`<script>alert(1)</script>` and ```\n<script>alert(1)</script>\n```",
        '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss++">',
        "<textarea></textarea><img src=x onerror=alert(1)>",
    ]
)


def _assert_nothing_ran(page: Any) -> None:
    assert page.evaluate("() => window.__xss") == 0
    assert page.dialogs == []
    thread = page.locator("#thread article.message")
    for selector in ("script", "img", "iframe", "svg", "style", "math", "details[ontoggle]", "textarea"):
        expect(thread.locator(selector)).to_have_count(0)
    expect(thread.locator("a[href^='javascript:'], a[href^='data:'], [onerror], [onload]")).to_have_count(0)


def test_xss_in_user_text_and_in_model_output_never_runs(user_page: Any, alice_user: Any, live: Any) -> None:
    page = user_page(alice_user)
    off_site: list[str] = []
    page.on(
        "request", lambda r: None if r.url.startswith((live.base_url, "data:")) else off_site.append(r.url)
    )
    chat = ChatPage(page).open(make_conversation(alice_user).pk)
    chat.send(XSS_CORPUS)
    first = chat.wait_reply()
    # The scripted model cannot read the corpus: its reply fails within harmony.MAX_HEADER_TOKENS tokens.
    chat.wait_status(first, ["done", "failed"])
    _assert_nothing_ran(page)
    # The scripted model answers its own XSS corpus to a plain request for it.
    chat.send("show me the xss corpus")
    reply = chat.wait_reply(after=first)
    chat.wait_status(reply, ["done"])
    stored = wait_stored(reply)
    assert stored.content == XSS_ANSWER
    assert chat.client_message(reply)["content"] == XSS_ANSWER
    shown = chat.shown_text(reply)
    assert "<script>window.__xss=1</script>" in shown  # shown as text, not run
    question = next(m["id"] for m in chat.messages() if m["role"] == "user")
    assert "<script>window.__xss++</script>" in chat.shown_text(question)
    # The title, from the first line, is text too.
    expect(page.locator("[data-role=title]")).to_have_text('<img src=x onerror="window.__xss++">')
    _assert_nothing_ran(page)
    page.reload()
    chat.wait_connected()
    page.wait_for_timeout(300)
    _assert_nothing_ran(page)
    # The server-rendered page (before the socket's state) is just as inert.
    page.goto(f"/c/{stored.conversation_id}/")
    _assert_nothing_ran(page)
    assert off_site == []


def test_a_second_user_cannot_open_the_first_users_conversation(
    user_page: Any, alice_user: Any, bob_user: Any
) -> None:
    conversation = make_conversation(alice_user, title="Alice's secret plans")
    Message.objects.create(conversation=conversation, role="user", content="my secret question")
    bob = user_page(bob_user)
    response = bob.goto(f"/c/{conversation.pk}/")
    assert response is not None and response.status == 404
    assert "secret" not in bob.content()
    expect(bob.locator(".conversation-link")).to_have_count(0)
    bob.goto("/")
    outcome = bob.evaluate(
        """(id) => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/conversations/${id}/`);
            const frames = [];
            let opened = false;
            ws.onopen = () => { opened = true; ws.send(JSON.stringify({action: "sync"})); };
            ws.onmessage = (event) => frames.push(event.data);
            ws.onclose = () => resolve({opened, frames});
            setTimeout(() => resolve({opened, frames, timeout: true}), 5000);
        })""",
        conversation.pk,
    )
    assert outcome == {"opened": False, "frames": []}
    for path in (f"/c/{conversation.pk}/rename/", f"/c/{conversation.pk}/messages/"):
        token = bob.evaluate("() => document.querySelector('[name=csrfmiddlewaretoken]').value")
        result = bob.request.post(path, form={"csrfmiddlewaretoken": token, "title": "pwned", "text": "hi"})
        assert result.status == 404, path
    conversation.refresh_from_db()
    assert conversation.title == "Alice's secret plans"
    assert conversation.messages.count() == 1


def test_signing_out_in_another_tab_takes_the_page_to_the_login_and_keeps_the_draft(
    user_page: Any, alice_user: Any
) -> None:
    page = user_page(alice_user)
    conversation = make_conversation(alice_user)
    chat = ChatPage(page).open(conversation.pk)
    chat.composer.fill("a draft I was still writing")
    other_tab = page.context.new_page()
    ChatPage(other_tab).open(conversation.pk)
    other_tab.locator("details.user-menu summary").click()
    other_tab.get_by_role("button", name="Sign out").click()
    other_tab.wait_for_url("**/accounts/login/**")
    page.wait_for_url(f"**/accounts/login/?next=/c/{conversation.pk}/", timeout=15_000)
    page.fill("input[name=username]", alice_user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/c/{conversation.pk}/")
    ChatPage(page).wait_connected()
    expect(ChatPage(page).composer).to_have_value("a draft I was still writing")
    assert not Message.objects.filter(conversation=conversation).exists()
