"""Screenshots of the main screens for a design review: GPTOSS_SHOTS=/tmp/shots pytest tests/browser -k shots.

Skipped unless GPTOSS_SHOTS names a folder. Laptop (1280×800) and phone (390×844), light and dark.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from chat.models import Conversation, Message
from chat.services import shares, transfers
from chat.services.branches import branch_switch
from chat.services.conversations import conversation_archive, conversation_pin
from chat.services.projects import project_create
from inference.models import ServedModel
from tests.browser.chat_page import ChatPage
from tests.browser.test_client import FakeServer, msg, question, state
from tests.browser.worker_play import finish, start
from tests.chat.transfer_fixtures import chatgpt_bytes
from tests.factories import make_conversation, make_exchange

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("GPTOSS_SHOTS"), reason="set GPTOSS_SHOTS=<folder> to take them"),
]

VIEWS = {
    "laptop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
              "has_touch": True},
}  # fmt: skip


@pytest.fixture(params=[(v, c) for v in VIEWS for c in ("light", "dark")], ids=lambda p: f"{p[0]}-{p[1]}")
def shot(request: pytest.FixtureRequest, user_page: Any, alice_user: Any) -> Any:
    view, scheme = request.param
    folder = Path(os.environ["GPTOSS_SHOTS"])
    folder.mkdir(parents=True, exist_ok=True)
    page = user_page(alice_user, color_scheme=scheme, **VIEWS[view])

    def take(name: str) -> None:
        page.wait_for_timeout(150)
        page.screenshot(path=str(folder / f"{name}-{view}-{scheme}.png"))

    return page, take


def test_shots_of_the_empty_state_and_the_settings(shot: Any, alice_user: Any) -> None:
    page, take = shot
    page.goto("/")
    take("empty")
    conversation = make_conversation(alice_user, title="Trip planning")
    page.goto(f"/c/{conversation.pk}/")
    page.click(".settings-panel summary")
    take("settings")


def test_shots_of_the_profile_page(shot: Any, alice_user: Any) -> None:
    page, take = shot
    page.goto("/settings/profile/")
    take("profile")
    page.locator(".profile-form .btn-primary").scroll_into_view_if_needed()
    take("profile-end")


def test_shots_of_a_finished_markdown_answer_with_a_tool_card(shot: Any, alice_user: Any) -> None:
    page, take = shot
    chat = ChatPage(page).open(make_conversation(alice_user).pk)
    chat.send("What is the weather like?")
    first = chat.wait_reply()
    chat.wait_status(first, ["done"])
    chat.send("Write some markdown")
    second = chat.wait_reply(after=first)
    chat.wait_status(second, ["done"])
    page.click(f"#message-{first} [data-role=tool] summary")
    page.evaluate("() => { const t = document.getElementById('thread'); t.scrollTop = t.scrollHeight; }")
    take("finished")


def test_shots_of_a_streaming_answer_with_reasoning_and_the_queue(shot: Any, alice_user: Any) -> None:
    page, take = shot
    conversation = make_conversation(alice_user, title="Why is the sky blue?")
    reasoning = (
        "The user asks why the sky is blue. Rayleigh scattering: shorter wavelengths scatter more strongly "
        "off the molecules in the air, roughly with the inverse fourth power of the wavelength. Violet "
        "scatters even more, but the sun emits less of it and our eyes are less sensitive to it, so"
    )
    server = FakeServer(
        page,
        state(
            conversation.pk,
            question(1, "Why is the sky blue?"),
            msg(2, status="streaming", reasoning=reasoning, seq=3),
            title="Why is the sky blue?",
        ),
    )
    chat = ChatPage(page)
    page.goto(f"/c/{conversation.pk}/")
    chat.wait_connected()
    take("reasoning")
    text = "Sunlight is scattered by the air, and blue "
    server.send(type="delta", message=2, seq=4, reasoning="", content=text)
    page.wait_for_timeout(100)
    take("streaming")
    server.send(**state(conversation.pk, question(1, "Why is the sky blue?"),
                        msg(2, status="queued", queue_position=3), title="Why is the sky blue?"))  # fmt: skip
    take("queue")


def test_shots_of_editing_an_error_reconnecting_and_the_jump_button(shot: Any, alice_user: Any) -> None:
    page, take = shot
    conversation = make_conversation(alice_user, title="Long story")
    story = "\n\n".join(f"Paragraph {i}: " + "the story goes on and on. " * 12 for i in range(12))
    server = FakeServer(
        page,
        state(
            conversation.pk,
            question(1, "Tell me a long story"),
            msg(2, status="interrupted", content="Once upon a time", html="<p>Once upon a time</p>",
                error="The GPU worker stopped while writing this reply. The text so far is kept."),
            question(3, "Tell me a long story, again"),
            msg(4, status="streaming", content=story, seq=1),
            title="Long story",
        ),
    )  # fmt: skip
    chat = ChatPage(page)
    page.goto(f"/c/{conversation.pk}/")
    chat.wait_connected()
    page.evaluate("() => { const t = document.getElementById('thread'); t.scrollTop = t.scrollHeight / 3; }")
    page.wait_for_timeout(100)
    server.send(type="delta", message=4, seq=2, reasoning="", content="\n\nAnd then more text arrived.")
    page.wait_for_selector("[data-role=jump]:visible")
    take("jump")
    server.send(type="done", message=msg(4, content="Short.", html="<p>Short.</p>", seq=3))
    page.fill("textarea[name=text]", "A question the server refuses")
    page.locator("textarea[name=text]").press("Enter")
    sent = server.actions("send")
    refused = "You already have 2 replies being written. Wait for one to finish, then send again."
    server.send(type="error", action="send", client_id=sent[-1]["client_id"], message=refused)
    page.wait_for_selector("[data-role=composer-error]")
    page.click("#message-3 [data-role=edit]")
    take("edit-error")
    server.routes[-1].close(code=1011)
    page.wait_for_selector("[data-role=conn]:visible")
    take("reconnecting")


def test_shots_of_math_copy_buttons_the_notification_switch_and_the_skip_link(
    shot: Any, alice_user: Any, worker_heartbeat: Any
) -> None:
    page, take = shot
    ServedModel.objects.create(name="orphan-oss", source="tiny")  # no worker serves it: the test plays one
    conversation = make_conversation(alice_user, model_name="orphan-oss", title="Gaussian integral")
    question = "What is $\\int_{-\\infty}^{\\infty} e^{-x^2}\\,dx$? It costs $5 and $6 to ask."
    reply = start(conversation, question)
    answer = (
        "Square it and switch to polar coordinates:\n\n"
        "$$\nI^2 = \\int_0^{2\\pi}\\!\\int_0^\\infty e^{-r^2} r\\,dr\\,d\\theta = \\pi\n$$\n\n"
        "so \\(I = \\sqrt{\\pi}\\). A matrix for good measure: "
        "\\[\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}^{-1} = \\frac{1}{ad-bc}"
        "\\begin{pmatrix} d & -b \\\\ -c & a \\end{pmatrix}\\]\n\n"
        "A formula that cannot be read stays as written: $\\frac{1}{$."
    )
    finish(reply, "done", answer, [], seq=0, queue_wait_ms=4, ttft_ms=120)
    ChatPage(page).open(conversation.pk)
    take("math")
    page.locator(f"#message-{reply.pk} [data-role=copy-message]").focus()
    take("copy-focused")
    menu = page.locator(".topbar [data-toggle-sidebar]")
    if menu.is_visible():
        menu.click()
    page.locator(".user-menu summary").click()
    take("notify-switch")
    page.goto(f"/c/{conversation.pk}/")
    top = "() => { const b = document.body; b.tabIndex = -1; b.focus(); b.removeAttribute('tabindex'); }"
    page.evaluate(top)  # the focus at the page's start, as from the address bar
    page.keyboard.press("Tab")
    take("skip-link")


def test_shots_of_the_search_palette_the_search_page_and_a_found_message(shot: Any, alice_user: Any) -> None:
    page, take = shot
    filler = "We went through the rest of the setup step by step, with the logs open beside it. " * 6
    serving = make_conversation(alice_user, title="Serving gpt-oss on the team's GPU")
    make_exchange(serving, "Which runtime should we use?", "llama.cpp through llama-cpp-python. " + filler)
    hit, _ = make_exchange(
        serving, "Can the llama server batch <several> users at once?", "Yes: continuous batching. " + filler
    )
    for n in range(6):
        make_exchange(serving, f"And step {n}?", filler)
    notes = make_conversation(alice_user, title="Llama licence notes")
    make_exchange(
        notes, "Summarize the licence", "The llama weights come with a licence of their own. " + filler
    )
    page.goto(f"/c/{notes.pk}/")
    ChatPage(page).wait_connected()
    page.keyboard.press("Control+k")
    page.keyboard.type("llam")
    page.wait_for_selector("dialog.palette [role=option]")
    page.keyboard.press("ArrowDown")
    take("search-palette")
    page.keyboard.press("Escape")
    page.goto("/search/?q=llama+serv")
    take("search-page")
    page.goto(f"/c/{serving.pk}/#message-{hit.pk}")
    ChatPage(page).wait_connected()
    page.wait_for_selector(f"#message-{hit.pk}.is-hit")
    take("search-found")


def test_shots_of_import_and_export_sharing_and_a_shared_page(shot: Any, alice_user: Any) -> None:
    page, take = shot
    page.goto("/settings/data/")
    take("data")
    imported = transfers.conversations_import(
        owner=alice_user, data=chatgpt_bytes(), filename="conversations.json"
    )
    tides = imported.conversations[0]
    share = shares.share_create(conversation=tides)
    page.goto(f"/c/{tides.pk}/")
    page.click(".share-panel summary")
    take("share-menu")
    page.goto("/settings/shares/")
    take("shares")
    page.goto(f"/s/{share.token}/")
    take("shared")


def test_shots_of_the_organized_sidebar_a_row_menu_a_project_and_the_archived_list(
    shot: Any, alice_user: Any
) -> None:
    page, take = shot
    project = project_create(owner=alice_user, name="Billing migration", instructions="We move to Go.")
    now = timezone.now()
    for i, (title, age) in enumerate(
        [("Invoice rounding bug", 0), ("Go error handling", 1), ("Team offsite ideas", 3), ("Old notes", 20)]
    ):
        conversation = make_conversation(alice_user, title=title, project=project if i < 2 else None)
        Conversation.objects.filter(pk=conversation.pk).update(
            updated_at=now - timedelta(days=age, minutes=i)
        )
    pinned = make_conversation(alice_user, title="Release checklist")
    conversation_pin(conversation=pinned, pinned=True)
    conversation_archive(conversation=make_conversation(alice_user, title="Archived idea"), archived=True)
    page.goto("/")
    menu = page.locator(".topbar [data-toggle-sidebar]")
    if menu.is_visible():
        menu.click()
    take("sidebar")
    page.locator("#sidebar .conversation-row", has_text="Go error handling").locator("summary").click()
    take("row-menu")
    page.goto(f"/p/{project.pk}/")
    take("project")
    page.goto("/archived/")
    take("archived")


def test_shots_of_branches_and_the_context_meter(shot: Any, alice_user: Any) -> None:
    page, take = shot
    conversation = make_conversation(alice_user, title="Lisbon weekend")
    question, _ = make_exchange(conversation, "Plan a weekend in Lisbon", "Day one: Alfama and the castle.")
    again = Message.objects.create(
        conversation=conversation, role="assistant", status="done", reply_to=question, parent=question,
        content="A slower plan: Belém in the morning, Príncipe Real in the evening.",
    )  # fmt: skip
    branch_switch(conversation=conversation, message_id=again.pk)
    make_exchange(conversation, "Make it cheaper", "Walk, take tram 28 once, eat at tascas.")
    edited = Message.objects.create(conversation=conversation, role="user", content="Make it vegetarian",
                                    parent=again)  # fmt: skip
    last = Message.objects.create(
        conversation=conversation, role="assistant", status="done", reply_to=edited, parent=edited,
        content="Try the vegetarian tascas of Mouraria.", prompt_tokens=1100, answer_tokens=120,
    )  # fmt: skip
    branch_switch(conversation=conversation, message_id=edited.pk)
    ChatPage(page).open(conversation.pk)
    take("branches")
    Message.objects.filter(pk=last.pk).update(prompt_tokens=2300, answer_tokens=150)
    ChatPage(page).open(conversation.pk)
    page.locator(f"#message-{edited.pk} [data-role=branch-previous]").focus()
    take("branches-full")
