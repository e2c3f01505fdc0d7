"""What a browser test does with the conversation page, in the words of a user."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from playwright.sync_api import expect

from chat.models import Message

TERMINAL = {"done", "cancelled", "failed", "interrupted"}


class ChatPage:
    def __init__(self, page: Any) -> None:
        self.page = page

    def open(self, conversation_id: int) -> ChatPage:
        self.page.goto(f"/c/{conversation_id}/")
        self.wait_connected()
        return self

    def wait_connected(self, timeout: float = 10_000) -> None:
        self.page.wait_for_function(
            "() => !!(window.gptossChat && window.gptossChat.connected())", timeout=timeout
        )

    def send(self, text: str) -> None:
        box = self.page.locator("textarea[name=text]")
        box.fill(text)
        box.press("Enter")

    @property
    def composer(self) -> Any:
        return self.page.locator("textarea[name=text]")

    def messages(self) -> list[dict[str, Any]]:
        """The client's own model of the thread (what it has applied)."""
        return list(self.page.evaluate("() => window.gptossChat.messages()"))

    def wait_reply(self, after: int = 0, timeout: float = 20) -> int:
        """Wait until the page shows an assistant reply with an id above *after*; return its id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = [m["id"] for m in self.messages() if m["role"] == "assistant" and m["id"] > after]
            if ids:
                return int(ids[-1])
            self.page.wait_for_timeout(20)
        raise AssertionError(f"no reply shown after message {after}: {self.messages()}")

    def content(self, message_id: int) -> Any:
        return self.page.locator(f"#message-{message_id} [data-role=content]")

    def shown_text(self, message_id: int) -> str:
        return str(self.content(message_id).inner_text())

    def client_message(self, message_id: int) -> dict[str, Any]:
        return next(m for m in self.messages() if m["id"] == message_id)

    def wait_status(self, message_id: int, statuses: Iterable[str], timeout: float = 30_000) -> None:
        """Wait until the page shows the reply finished (its `done` applied) with one of *statuses*."""
        selector = ", ".join(
            f"#message-{message_id}[data-status={s}] [data-role=content]:not(:has([data-role=stream-text]))"
            for s in statuses
        )
        try:
            self.page.wait_for_selector(selector, timeout=timeout)
        except Exception as error:
            stored = (
                Message.objects.filter(pk=message_id)
                .values("status", "content", "stream_seq", "error", "notice", "worker", "started_at")
                .first()
            )
            connected = self.page.evaluate("() => window.gptossChat.connected()")
            raise AssertionError(
                f"reply {message_id} not shown as {list(statuses)}; stored: {stored!r}; "
                f"page: {self.messages()!r}; connected: {connected}"
            ) from error

    def sample_text(
        self, message_id: int, until: Callable[[list[str]], bool], timeout: float = 15
    ) -> list[str]:
        """Read the reply's text every few milliseconds; return the distinct values seen, in order."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        script = f"() => {{ const el = document.querySelector('#message-{message_id} [data-role=content]'); return el ? el.innerText : ''; }}"  # noqa: E501
        while time.monotonic() < deadline:
            text = self.page.evaluate(script)
            if text and (not seen or seen[-1] != text):
                seen.append(text)
            if until(seen):
                return seen
            self.page.wait_for_timeout(15)
        raise AssertionError(f"gave up sampling; saw {seen!r}")

    def stop(self) -> None:
        self.page.click("[data-role=stop]")

    def expect_status_badge(self, message_id: int, text: str) -> None:
        expect(self.page.locator(f"#message-{message_id} [data-role=meta]")).to_contain_text(text)


def wait_stored(message_id: int, statuses: Iterable[str] = TERMINAL, timeout: float = 30) -> Message:
    """Wait until the stored reply reaches one of *statuses*; return it."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = Message.objects.get(pk=message_id)
        # A reply stopped mid-stream is `cancelled` at once; its worker then stores the final text and stats.
        finished = message.status != "cancelled" or message.started_at is None or message.ttft_ms is not None
        if message.status in wanted and finished:
            return message
        time.sleep(0.1)
    raise AssertionError(f"message {message_id} is still {Message.objects.get(pk=message_id).status}")


def fits_the_width(page: Any) -> bool:
    """Return whether the page is no wider than the device: a phone's browser widens its layout viewport to
    fit what overflows (and zooms out), so the page is measured against the width the test asked for."""
    return bool(page.evaluate("() => document.documentElement.scrollWidth") <= page.viewport_size["width"])
