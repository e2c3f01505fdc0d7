"""Reading a conversation: copying whole messages, math on the page, being told a reply ended, and using it
all with the keyboard alone, on a laptop and on a phone.

Replies are played through the services and the stream (tests/browser/worker_play.py) for a model no worker
serves, so the test chooses their text (Markdown, code, math) and the moment they end.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Message
from gptoss_web.devtools.stack import Stack
from inference.models import ServedModel
from tests.browser.chat_page import ChatPage
from tests.browser.worker_play import finish, start, stream
from tests.factories import make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

VIEWS = {
    "laptop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
              "has_touch": True},
}  # fmt: skip

QUESTION = "What is **Euler's identity**? Show it as $e^{i\\pi}+1=0$."
ANSWER = (
    "It links five constants:\n\n$$\ne^{i\\pi} + 1 = 0\n$$\n\n"
    "where \\(i^2 = -1\\). It costs $5 and $6 to print.\n\n"
    "```python\nimport cmath\nprint(cmath.exp(1j * cmath.pi) + 1)\n```\n"
)


@pytest.fixture(params=list(VIEWS))
def view(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(VIEWS[request.param])


@pytest.fixture
def conversation(alice_user: Any, worker_heartbeat: Any) -> Conversation:
    ServedModel.objects.create(name="orphan-oss", source="tiny")  # no worker serves it: replies stay put
    return make_conversation(alice_user, model_name="orphan-oss", title="Euler")


def answered(conversation: Conversation, question: str = QUESTION, answer: str = ANSWER) -> Message:
    reply = start(conversation, question)
    stream(reply, 1, type="delta", reasoning="", content=answer)
    finish(reply, "done", answer, [], seq=1, queue_wait_ms=5, ttft_ms=90)
    return reply


def clipboard(page: Any) -> str:
    return str(page.evaluate("() => navigator.clipboard.readText()"))


def test_copy_a_whole_answer_and_a_whole_question_as_markdown(
    user_page: Any, alice_user: Any, conversation: Conversation, view: dict[str, Any]
) -> None:
    reply = answered(conversation)
    page = user_page(alice_user, permissions=["clipboard-read", "clipboard-write"], **view)
    chat = ChatPage(page).open(conversation.pk)
    question = page.locator(f"#message-{reply.reply_to_id} [data-role=copy-message]")
    answer = page.locator(f"#message-{reply.pk} [data-role=copy-message]")
    expect(question).to_have_accessible_name("Copy question")
    expect(answer).to_have_accessible_name("Copy answer")

    answer.click()
    expect(answer).to_have_text("Copied")
    assert clipboard(page) == ANSWER  # the stored Markdown, not the rendered page
    question.click()
    assert clipboard(page) == QUESTION

    # A code block's own Copy still copies just the code.
    page.locator(f"#message-{reply.pk} pre.codeblock .copy-btn").click()
    assert clipboard(page) == "import cmath\nprint(cmath.exp(1j * cmath.pi) + 1)\n"

    # A reply still being written has nothing to copy yet; it gets its button when it ends.
    streaming = start(conversation, "And in words?")
    stream(streaming, 1, type="delta", reasoning="", content="Half an answer")
    expect(chat.content(streaming.pk)).to_contain_text("Half an answer")
    expect(page.locator(f"#message-{streaming.pk} [data-role=copy-message]")).to_have_count(0)
    finish(streaming, "done", "A whole answer.", [], seq=1)
    chat.wait_status(streaming.pk, ["done"])
    page.locator(f"#message-{streaming.pk} [data-role=copy-message]").click()
    assert clipboard(page) == "A whole answer."


def test_math_shows_as_mathml_on_the_page_and_when_a_streamed_reply_ends(
    user_page: Any, alice_user: Any, conversation: Conversation, view: dict[str, Any]
) -> None:
    answered(conversation)
    page = user_page(alice_user, **view)
    chat = ChatPage(page).open(conversation.pk)
    thread = page.locator("#thread")
    # The question's inline formula, the answer's displayed and inline ones; prices stay prices.
    expect(thread.locator('math[display="inline"]')).to_have_count(2)
    expect(thread.locator('math[display="block"]')).to_have_count(1)
    expect(thread).to_contain_text("It costs $5 and $6 to print.")
    assert page.evaluate("() => document.querySelector('#thread math').namespaceURI").endswith("/MathML")
    assert page.locator('#thread math[display="block"]').bounding_box()["height"] > 10

    # Streamed text is plain text while it grows; the reply's end brings the server's rendering, math too.
    formula = "$$\\text{<script>alert(1)</script>} \\frac{a}{b}$$ and $\\sqrt{x<img src=x onerror=alert(2)>}$"
    reply = start(conversation, "Show me some markup in a formula")
    stream(reply, 1, type="delta", reasoning="", content=formula)
    expect(chat.content(reply.pk)).to_have_text(formula)
    expect(chat.content(reply.pk).locator("math")).to_have_count(0)
    finish(reply, "done", formula, [], seq=1)
    chat.wait_status(reply.pk, ["done"])
    answer = chat.content(reply.pk)
    expect(answer.locator("math")).to_have_count(2)
    expect(answer.locator("mfrac")).to_have_count(1)
    expect(answer.locator("mtext")).to_have_text("<script>alert(1)</script>")
    expect(answer.locator("script, img")).to_have_count(0)
    assert page.evaluate("() => window.__xss") == 0 and page.dialogs == []

    # A formula the converter cannot read shows its source, and the page still works.
    broken = start(conversation, "A broken one")
    finish(broken, "done", "Broken: $\\sqrt[$ end", [], seq=0)
    chat.wait_status(broken.pk, ["done"])
    expect(chat.content(broken.pk)).to_have_text("Broken: $\\sqrt[$ end")


# The tab is hidden by the test: headless chromium shows every page, so it cannot switch tabs for real. The
# notification is the browser's own (constructed through the page's code and shown: its `show` event fires);
# the observer only records what was constructed.
TAB_AND_NOTIFICATIONS = """
(() => {
  let hidden = false;
  const state = () => (hidden ? "hidden" : "visible");
  Object.defineProperty(Document.prototype, "visibilityState", { get: state });
  Object.defineProperty(Document.prototype, "hidden", { get: () => hidden });
  window.__setTabHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
  window.__notifications = [];
  if (!window.Notification) { return; }
  const Real = window.Notification;
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      const seen = { title, body: options && options.body, tag: options && options.tag, shown: false };
      this.addEventListener("show", () => { seen.shown = true; });
      window.__notifications.push(seen);
    }
  };
})();
"""


def open_user_menu(page: Any) -> None:
    menu = page.locator(".topbar [data-toggle-sidebar]")
    if menu.is_visible():
        menu.click()
    page.locator(".user-menu summary").click()


def set_tab_hidden(page: Any, hidden: bool) -> None:
    page.evaluate("(hidden) => window.__setTabHidden(hidden)", hidden)


def test_a_reply_that_ends_in_a_hidden_tab_badges_the_title_and_notifies_when_switched_on(
    user_page: Any, alice_user: Any, conversation: Conversation, view: dict[str, Any]
) -> None:
    page = user_page(alice_user, permissions=["notifications"], **view)
    page.add_init_script(TAB_AND_NOTIFICATIONS)
    chat = ChatPage(page).open(conversation.pk)
    switch = page.locator("[data-role=notify-switch]")
    open_user_menu(page)
    expect(switch).to_be_visible()
    expect(switch).not_to_be_checked()  # off until the reader switches it on

    # Off: a reply that ends while the tab is hidden counts in the title, and nothing pops up.
    first = start(conversation, "First question")
    set_tab_hidden(page, True)
    finish(first, "done", "First answer.", [], seq=0)
    chat.wait_status(first.pk, ["done"])
    expect(page).to_have_title("(1) Euler · gptoss-web")
    set_tab_hidden(page, False)
    expect(page).to_have_title("Euler · gptoss-web")
    assert page.evaluate("() => window.__notifications") == []

    switch.check()
    expect(switch).to_be_checked()
    second = start(conversation, "Second question")
    stream(second, 1, type="delta", reasoning="", content="The")
    expect(chat.content(second.pk)).to_contain_text("The")
    set_tab_hidden(page, True)
    finish(second, "done", "The **second** answer, in full.", [], seq=1)
    chat.wait_status(second.pk, ["done"])
    expect(page).to_have_title("(1) Euler · gptoss-web")
    page.wait_for_function("() => window.__notifications.length === 1 && window.__notifications[0].shown")
    [note] = page.evaluate("() => window.__notifications")
    assert note["title"] == "Euler" and note["body"] == "The **second** answer, in full."
    assert note["tag"] == f"gptoss-reply-{second.pk}"

    # A reply the reader is looking at tells nobody.
    set_tab_hidden(page, False)
    expect(page).to_have_title("Euler · gptoss-web")
    third = start(conversation, "Third question")
    finish(third, "done", "Third answer.", [], seq=0)
    chat.wait_status(third.pk, ["done"])
    expect(page).to_have_title("Euler · gptoss-web")
    assert len(page.evaluate("() => window.__notifications")) == 1

    # The switch holds across a reload.
    page.reload()
    ChatPage(page).wait_connected()
    open_user_menu(page)
    expect(page.locator("[data-role=notify-switch]")).to_be_checked()


def test_switching_notifications_on_asks_the_browser_and_says_when_it_refuses(
    user_page: Any, alice_user: Any, conversation: Conversation
) -> None:
    page = user_page(alice_user)  # no permission granted: chromium refuses when asked
    ChatPage(page).open(conversation.pk)
    assert page.evaluate("() => Notification.permission") == "default"  # nothing asked before the switch
    open_user_menu(page)
    switch = page.locator("[data-role=notify-switch]")
    switch.click()
    expect(page.locator("[data-role=notify-note]")).to_contain_text("blocks notifications")
    expect(switch).not_to_be_checked()


FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) { return ""; }
  const message = el.closest("article.message");
  return [el.tagName.toLowerCase(), el.getAttribute("data-role") || el.getAttribute("aria-label") || "",
          el.textContent.trim().slice(0, 40), message ? message.id : ""].join("|");
}"""


def from_the_top(page: Any) -> None:
    """Put the focus at the start of the page, as a reader arriving from the address bar has it (the composer
    takes the focus when the page opens)."""
    page.evaluate(
        "() => { const b = document.body; b.tabIndex = -1; b.focus(); b.removeAttribute('tabindex') }"
    )


def tab_through(page: Any, stops: int = 80) -> list[str]:
    """Press Tab from the top of the page; return what held the focus after each press, once round."""
    seen: list[str] = []
    for _ in range(stops):
        page.keyboard.press("Tab")
        focused = str(page.evaluate(FOCUSED))
        if seen and focused == seen[0]:
            break
        seen.append(focused)
    return seen


def test_every_action_of_the_chat_page_works_from_the_keyboard(
    user_page: Any, alice_user: Any, conversation: Conversation, view: dict[str, Any]
) -> None:
    other = make_conversation(alice_user, title="Another chat")
    reply = answered(conversation)
    page = user_page(alice_user, permissions=["clipboard-read", "clipboard-write"], **view)
    ChatPage(page).open(conversation.pk)
    phone = view["viewport"]["width"] < 800
    from_the_top(page)

    # The first stop on the page is the skip link; following it lands in the conversation.
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    expect(skip).to_have_text("Skip to the conversation")
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()

    stops = tab_through(page)
    joined = "\n".join(stops)
    for wanted in (
        f"button|copy-message|Copy|message-{reply.reply_to_id}",
        f"button|copy-message|Copy|message-{reply.pk}",
        f"button|Copy code|Copy|message-{reply.pk}",
        f"button|regenerate|Regenerate|message-{reply.pk}",
        f"button|edit|Edit|message-{reply.reply_to_id}",
        "summary||Settings|",
        "textarea|||",
        "button|send|➤|",
    ):
        assert wanted in stops, f"{wanted!r} never took the focus:\n{joined}"
    # Sidebar links are there too, on a phone only once its menu is open (closed, it is out of the Tab order).
    link = "a||Another chat"
    assert any(s.startswith(link) for s in stops) is not phone, joined
    if phone:
        page.locator(".topbar [data-toggle-sidebar]").focus()
        page.keyboard.press("Enter")
        expect(page.locator(".sidebar [data-toggle-sidebar]")).to_be_focused()
        assert any(s.startswith(link) for s in tab_through(page, 12))
        page.keyboard.press("Escape")
        expect(page.locator(".topbar [data-toggle-sidebar]")).to_be_focused()

    # Operable, not just reachable: copy, open the settings, type and send, all with keys.
    page.locator(f"#message-{reply.pk} [data-role=copy-message]").focus()
    page.keyboard.press("Enter")
    assert clipboard(page) == ANSWER
    page.locator(".settings-panel summary").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".settings-panel .popover-body")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator(".settings-panel .popover-body")).to_be_hidden()
    page.locator("textarea[name=text]").focus()
    page.keyboard.type("Sent from the keyboard")
    page.keyboard.press("Tab")
    expect(page.locator("[data-role=send]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#thread")).to_contain_text("Sent from the keyboard")
    assert Message.objects.filter(conversation=conversation, content="Sent from the keyboard").exists()
    # The link to the other conversation, followed from the keyboard.
    if phone:
        page.locator(".topbar [data-toggle-sidebar]").press("Enter")
    page.locator(".conversation-link", has_text="Another chat").press("Enter")
    page.wait_for_url(f"**/c/{other.pk}/")


@pytest.mark.parametrize("path", ["/", "/settings/api-keys/", "/accounts/password/", "/accounts/login/"])
def test_every_page_starts_with_a_skip_link_to_its_content(
    user_page: Any, alice_user: Any, browser: Any, live: Stack, path: str
) -> None:
    if path == "/accounts/login/":
        page = browser.new_context(base_url=live.base_url).new_page()
    else:
        page = user_page(alice_user)
    page.goto(path)
    from_the_top(page)
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    expect(page.locator(".skip-link")).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("#content")).to_be_focused()
    if path == "/accounts/login/":
        page.context.close()
