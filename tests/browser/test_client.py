"""The chat client against a scripted socket: seq order, gaps, reasoning, composer, reconnects.

The page comes from the real Daphne; its WebSocket is answered by the test (Playwright's
route_web_socket), so every frame order the protocol allows can be played exactly.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.factories import make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def msg(id: int, role: str = "assistant", status: str = "done", **fields: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "id": id, "role": role, "status": status, "reply_to": id - 1 if role == "assistant" else None,
        "content": "", "reasoning": "", "tool_calls": [], "error": "", "notice": "",
        "reasoning_effort": "medium", "model_name": "tiny", "seq": 0, "html": "",
        "stats": {"prompt_tokens": 0, "reasoning_tokens": 0, "answer_tokens": 0,
                  "queue_wait_ms": None, "ttft_ms": None, "tokens_per_second": None},
        "queue_position": None,
    }  # fmt: skip
    m.update(fields)
    return m


def question(id: int, text: str) -> dict[str, Any]:
    return msg(id, "user", content=text, html=f"<p>{text}</p>")


class FakeServer:
    """Answer the page's conversation socket; `state` is sent on every connect."""

    def __init__(self, page: Any, state: dict[str, Any]) -> None:
        self.page = page
        self.state = state
        self.routes: list[Any] = []
        self.received: list[dict[str, Any]] = []
        page.route_web_socket(re.compile(r".*/ws/conversations/\d+/$"), self._connect)

    def _connect(self, ws: Any) -> None:
        self.routes.append(ws)
        ws.on_message(lambda text: self.received.append(json.loads(text)))
        ws.send(json.dumps(self.state))

    def send(self, **frame: Any) -> None:
        self.routes[-1].send(json.dumps(frame))

    def actions(self, name: str) -> list[dict[str, Any]]:
        self.page.wait_for_timeout(50)  # let the page's frames reach us
        return [f for f in self.received if f.get("action") == name]


def state(conversation: int, *messages: dict[str, Any], title: str = "A title") -> dict[str, Any]:
    return {"type": "state", "conversation": conversation, "title": title, "messages": list(messages)}


@pytest.fixture
def open_chat(user_page: Any, alice_user: Any) -> Any:
    def open_(*messages: dict[str, Any], title: str = "A title") -> tuple[Any, FakeServer]:
        conversation = make_conversation(alice_user, title=title)
        page = user_page(alice_user)
        server = FakeServer(page, state(conversation.pk, *messages, title=title))
        page.goto(f"/c/{conversation.pk}/")
        page.wait_for_function("() => window.gptossChat && window.gptossChat.connected()")
        return page, server

    return open_


def content(page: Any, id: int) -> str:
    return str(page.inner_text(f"#message-{id} [data-role=content]"))


def test_deltas_apply_in_seq_order_and_a_gap_asks_for_the_state_again(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Hi"), msg(2, status="streaming", content="Hel", seq=2))
    server.send(type="delta", message=2, seq=2, reasoning="", content="XX")  # already in the state
    server.send(type="delta", message=2, seq=3, reasoning="", content="lo")
    expect(page.locator("#message-2 [data-role=content]")).to_have_text("Hello")
    assert server.actions("sync") == []
    server.send(type="delta", message=2, seq=5, reasoning="", content=" lost")  # seq 4 is missing
    page.wait_for_timeout(100)
    assert content(page, 2) == "Hello"
    assert len(server.actions("sync")) == 1
    server.state = state(1, question(1, "Hi"), msg(2, status="streaming", content="Hello, world", seq=5))
    server.send(**server.state)
    server.send(type="delta", message=2, seq=6, reasoning="", content="!")
    expect(page.locator("#message-2 [data-role=content]")).to_have_text("Hello, world!")


def test_done_replaces_the_streamed_text_with_the_server_html_and_shows_stats(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Hi"), msg(2, status="streaming", content="**bold", seq=1))
    assert page.locator("#message-2 strong").count() == 0
    assert content(page, 2) == "**bold"  # streamed text is text, never markup
    stats = {"prompt_tokens": 70, "reasoning_tokens": 5, "answer_tokens": 9, "queue_wait_ms": 12,
             "ttft_ms": 40, "tokens_per_second": 55.25}  # fmt: skip
    done = msg(2, content="**bold**", html="<p><strong>bold</strong></p><pre class=\"codeblock\" "
               "data-lang=\"python\"><code>x = 1</code></pre>", seq=2, stats=stats)  # fmt: skip
    server.send(type="done", message=done)
    page.wait_for_selector("#message-2 strong")
    meta = page.inner_text("#message-2 [data-role=stats]")
    for part in ("queue 12 ms", "first token 40 ms", "55.3 tok/s", "70 · 5 · 9 tokens", "effort medium"):
        assert part in meta
    assert page.locator("#message-2 pre.codeblock .copy-btn").count() == 1
    assert page.locator("#message-2 [data-role=regenerate]").is_visible()
    assert page.locator("#message-1 [data-role=edit]").is_visible()


def test_reasoning_grows_in_the_open_and_folds_away_when_the_answer_starts(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Think"), msg(2, status="streaming", seq=0))
    server.send(type="delta", message=2, seq=1, reasoning="First I ", content="")
    page.wait_for_selector("#message-2 details[data-role=reasoning][open]")
    server.send(type="delta", message=2, seq=2, reasoning="consider.", content="")
    expect(page.locator("#message-2 [data-role=reasoning-body]")).to_have_text("First I consider.")
    assert "Reasoning…" in page.inner_text("#message-2 [data-role=reasoning] summary")
    server.send(type="delta", message=2, seq=3, reasoning="", content="Four.")
    expect(page.locator("#message-2 details[data-role=reasoning][open]")).to_have_count(0)
    assert content(page, 2) == "Four."


def test_queue_position_tool_cards_notices_and_titles_update_live(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Weather?"), msg(2, status="queued", queue_position=3), title="")
    expect(page.locator("#message-2 [data-role=queue]")).to_have_text("3rd in queue")
    server.send(type="queued", message=2, position=1)
    expect(page.locator("#message-2 [data-role=queue]")).to_have_text("1st in queue")
    server.send(type="started", message=2)
    expect(page.locator("#message-2 [data-role=meta]")).to_contain_text("Answering…")
    call = {"recipient": "functions.get_weather", "arguments": '{"city":"<b>Paris</b>"}'}
    server.send(type="tool", message=2, seq=1, index=0, call=call)
    page.wait_for_selector("#message-2 [data-role=tool].running")
    server.send(type="tool", message=2, seq=2, index=0, call={**call, "result": "sunny <img src=x>"})
    page.wait_for_selector("#message-2 [data-role=tool]:not(.running)")
    page.click("#message-2 [data-role=tool] summary")
    body = page.inner_text("#message-2 [data-role=tool] .tool-body")
    assert '{"city":"<b>Paris</b>"}' in body and "sunny <img src=x>" in body
    server.send(type="notice", message=2, seq=3, notice="Older turns were left out.")
    page.wait_for_selector("#message-2 [data-role=notice]:has-text('Older turns')")
    server.send(type="title", title="Weather in Paris")
    expect(page.locator("[data-role=title]")).to_have_text("Weather in Paris")
    assert page.inner_text(".conversation-link.active .title") == "Weather in Paris"
    assert page.title().startswith("Weather in Paris")


def test_the_composer_keeps_the_text_until_the_ack_and_after_an_error(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Hi"), msg(2, content="Hello", html="<p>Hello</p>"))
    box = page.locator("textarea[name=text]")
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line")
    box.press("Enter")
    sent = server.actions("send")
    assert [f["text"] for f in sent] == ["first line\nsecond line"]
    assert box.input_value() == "first line\nsecond line"
    server.send(type="error", action="send", client_id=sent[0]["client_id"], message="Too busy right now.")
    page.wait_for_selector("[data-role=composer-error]:has-text('Too busy right now.')")
    assert box.input_value() == "first line\nsecond line"
    box.press("Enter")
    sent = server.actions("send")
    assert len(sent) == 2
    server.send(type="ack", action="send", client_id=sent[1]["client_id"])
    expect(page.locator("textarea[name=text]")).to_have_value("")
    assert page.locator("[data-role=composer-error]").count() == 0


def test_a_lost_socket_disables_sending_keeps_the_text_and_reconnects_to_fresh_state(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Hi"), msg(2, status="streaming", content="Hel", seq=1))
    page.fill("textarea[name=text]", "typed while offline")
    server.routes[-1].close(code=1011)
    page.wait_for_selector("[data-role=conn]:has-text('Reconnecting')")
    assert page.locator("[data-role=send]").is_disabled()
    page.locator("textarea[name=text]").press("Enter")
    assert server.actions("send") == []
    assert page.input_value("textarea[name=text]") == "typed while offline"
    finished = msg(2, content="Hello there", html="<p>Hello there</p>", seq=4)
    server.state = state(1, question(1, "Hi"), finished)
    page.wait_for_function("() => window.gptossChat.connected()", timeout=5000)
    assert len(server.routes) == 2
    assert content(page, 2) == "Hello there"
    assert page.locator("[data-role=conn]").is_hidden()
    assert page.locator("[data-role=send]").is_enabled()
    assert page.input_value("textarea[name=text]") == "typed while offline"


def test_stop_regenerate_and_edit_send_their_actions(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Hi"), msg(2, status="streaming", content="Hel", seq=1))
    page.locator("textarea[name=text]").press("Escape")
    assert len(server.actions("stop")) == 1
    page.click("[data-role=stop]")
    assert len(server.actions("stop")) == 2
    server.send(type="done", message=msg(2, status="cancelled", content="Hel", html="<p>Hel</p>", seq=1))
    page.wait_for_selector("#message-2 [data-role=status]:has-text('Stopped')")
    assert page.locator("[data-role=stop]").is_hidden()
    page.click("#message-2 [data-role=regenerate]")
    assert [f["message"] for f in server.actions("regenerate")] == [2]
    page.click("#message-1 [data-role=edit]")
    editor = page.locator("#message-1 [data-role=edit-form] textarea")
    assert editor.input_value() == "Hi"
    editor.fill("Hi again")
    editor.press("Enter")
    edits = server.actions("edit")
    assert [(f["message"], f["text"]) for f in edits] == [(1, "Hi again")]
    server.send(type="error", action="edit", client_id=edits[0]["client_id"], message="Still answering.")
    page.wait_for_selector("#message-1 [data-role=edit-form] :text('Still answering.')")
    assert editor.input_value() == "Hi again"
    server.send(type="ack", action="edit", client_id=edits[0]["client_id"])
    # The branch on screen changed: the server sends the new thread, then the new messages' events.
    versions = {"index": 2, "count": 2, "previous": 1, "next": None}
    server.send(**state(0, {**question(3, "Hi again"), "branch": versions}, msg(4, status="queued")))
    server.send(type="message", message=question(3, "Hi again"))
    server.send(type="message", message=msg(4, status="queued", queue_position=1))
    page.wait_for_selector("#message-4 [data-role=queue]")
    assert page.locator("#message-1").count() == 0 and page.locator("#message-2").count() == 0
    assert page.locator("[data-role=edit-form]").count() == 0
    assert page.locator("[data-role=stop]").is_visible()
    # The new question keeps its place among its versions after its own `message` frame.
    expect(page.locator("#message-3 [data-role=branch]")).to_have_attribute("aria-label", "Version 2 of 2")
    expect(page.locator("#message-3 [data-role=branch-previous]")).to_be_disabled()  # while it answers


def test_the_typed_text_survives_a_reload_until_the_server_has_it(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Hi"), msg(2, content="Hello", html="<p>Hello</p>"))
    page.locator("textarea[name=text]").fill("half a thought")
    page.reload()
    expect(page.locator("textarea[name=text]")).to_have_value("half a thought")
    page.locator("textarea[name=text]").press("Enter")
    sent = server.actions("send")
    server.send(type="ack", action="send", client_id=sent[-1]["client_id"])
    expect(page.locator("textarea[name=text]")).to_have_value("")
    page.reload()
    page.wait_for_timeout(200)
    expect(page.locator("textarea[name=text]")).to_have_value("")


def test_a_deleted_conversation_stops_reconnecting(open_chat: Any) -> None:
    page, server = open_chat(question(1, "Hi"), msg(2, content="Hello", html="<p>Hello</p>"))
    server.routes[-1].close(code=4404)
    expect(page.locator("[data-role=conn]")).to_have_text("This conversation no longer exists.")
    page.wait_for_timeout(1500)
    assert len(server.routes) == 1
    expect(page.locator("[data-role=send]")).to_be_disabled()


def test_auto_scroll_follows_the_stream_until_the_reader_scrolls_up(open_chat: Any) -> None:
    long_text = "\n\n".join(f"Paragraph {i} of a long answer." for i in range(80))
    answer = msg(2, status="streaming", content=long_text, seq=1)
    page, server = open_chat(question(1, "Long, please"), answer)
    bottom = "() => { const t = document.getElementById('thread'); return t.scrollHeight - t.scrollTop - t.clientHeight; }"  # noqa: E501
    server.send(type="delta", message=2, seq=2, reasoning="", content="\n\nMore.")
    page.wait_for_timeout(150)
    assert page.evaluate(bottom) < 48  # following the stream
    page.mouse.move(600, 300)
    page.mouse.wheel(0, -1500)
    page.wait_for_timeout(150)
    top = page.evaluate("() => document.getElementById('thread').scrollTop")
    server.send(type="delta", message=2, seq=3, reasoning="", content="\n\nEven more.")
    expect(page.locator("[data-role=jump]")).to_be_visible()
    assert page.evaluate("() => document.getElementById('thread').scrollTop") == top
    page.click("[data-role=jump]")
    page.wait_for_timeout(150)
    assert page.evaluate(bottom) < 48
    expect(page.locator("[data-role=jump]")).to_be_hidden()


def test_a_new_conversation_s_address_top_bar_and_sidebar_row_wait_for_its_first_answer_text(
    user_page: Any, alice_user: Any
) -> None:
    """On the start page the first message makes the conversation; the page takes its address, and fetches
    its top bar and sidebar row from the server, only once the answer shows its first text, so that none of
    it competes with that text."""
    conversation = make_conversation(alice_user, title="Picnic plans")
    page = user_page(alice_user)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    server = FakeServer(page, state(0, title=""))
    page.route_web_socket(re.compile(r".*/ws/conversations/new/$"), server._connect)
    page.goto("/")
    page.wait_for_function("() => window.gptossChat && window.gptossChat.connected()")
    page.fill("textarea[name=text]", "Plan a picnic")
    page.keyboard.press("Enter")
    for _ in range(100):
        if server.actions("send"):
            break
    send = server.actions("send")[0]
    url = f"/c/{conversation.pk}/"
    server.send(type="created", conversation=conversation.pk, url=url)
    server.send(**state(conversation.pk, question(1, "Plan a picnic"), msg(2, status="streaming"),
                        title="Picnic plans"))  # fmt: skip
    server.send(type="ack", action="send", client_id=send["client_id"])
    # The user's own `sidebar` frame for it, which the real socket sends after `created`.
    server.send(type="sidebar", change="created", conversation=conversation.pk)
    sidebar_row = re.compile(rf"/{conversation.pk}/")
    page.wait_for_timeout(500)
    assert not page.url.endswith(url)  # the address moves with the first text too
    assert not [u for u in fetched if sidebar_row.search(u)]  # nothing of it fetched before the answer
    server.send(type="delta", message=2, seq=1, at=0, reasoning="", content="Sandwiches")
    expect(page.locator("#message-2 [data-role=content]")).to_have_text("Sandwiches")
    page.wait_for_url(f"**{url}")
    expect(page.locator(".topbar [data-role=title]")).to_have_text("Picnic plans")
    row = page.locator(f"#sidebar .conversation-row[data-conversation='{conversation.pk}']")
    expect(row).to_have_class(re.compile(r"\bactive\b"))  # the row of the page it is on
    page.wait_for_timeout(200)
    # Fetched after the first text: the top bar alone (not the whole page again), and the row once.
    assert sorted(u for u in fetched if sidebar_row.search(u)) == [f"{page.url}row/", f"{page.url}topbar/"]
