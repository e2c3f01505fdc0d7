"""Tools end to end: the tiny model calls a function, runs python and searches; the browser shows each call as
a card with its result, then the answer that followed it (real Daphne, Celery worker and sandbox)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from chat.models import Message
from gptoss_web.devtools.tinymodel import PYTHON_CALL, SCRIPTS, SEARCH_CALL, WEATHER_CALL
from inference.tools.models import Function, ToolSettings
from tests.browser.chat_page import ChatPage
from tests.factories import make_conversation
from tests.fakes import Reply, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _answer_with_tool(user_page: Any, owner: Any, tool: str, text: str) -> tuple[ChatPage, int]:
    chat = ChatPage(user_page(owner)).open(make_conversation(owner, enabled_tools=[tool]).pk)
    chat.send(text)
    reply = chat.wait_reply()
    chat.wait_status(reply, ["done"])
    return chat, reply


def _card(chat: ChatPage, reply: int) -> Any:
    card = chat.page.locator(f"#message-{reply} [data-role=tool]")
    expect(card).to_have_count(1)
    card.locator("summary").click()  # open it, as a user would
    return card


def test_python_runs_in_the_sandbox_and_the_card_shows_its_output(user_page: Any, alice_user: Any) -> None:
    chat, reply = _answer_with_tool(user_page, alice_user, "python", "Run some python")
    card = _card(chat, reply)
    expect(card.locator(".tool-name")).to_have_text("python")
    expect(card.locator(".tool-state")).to_have_text("done")
    expect(card.locator(".tool-body")).to_contain_text(PYTHON_CALL)
    expect(card.locator(".tool-body")).to_contain_text("42")
    assert chat.shown_text(reply) == SCRIPTS["python"].after_tool.final  # type: ignore[union-attr]


def test_a_function_gets_the_models_arguments_and_the_answer_follows_its_result(
    user_page: Any, alice_user: Any
) -> None:
    team = Group.objects.create(name="weather-team")
    alice_user.groups.add(team)
    with serve(lambda hit: Reply(200, b'{"temperature_c": 21}', {"Content-Type": "application/json"})) as api:
        function = Function.objects.create(
            name="get_weather",
            description="Get the current weather in a city.",
            parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            url=f"{api.url}/weather",
        )
        function.groups.set([team])
        chat, reply = _answer_with_tool(
            user_page, alice_user, "functions.get_weather", "What is the weather like?"
        )
    assert [json.loads(h.body) for h in api.hits] == [json.loads(WEATHER_CALL)]
    card = _card(chat, reply)
    expect(card.locator(".tool-name")).to_have_text("functions.get_weather")
    expect(card.locator(".tool-body")).to_contain_text("21")
    assert chat.shown_text(reply) == SCRIPTS["function"].after_tool.final  # type: ignore[union-attr]


def test_a_search_is_shown_and_the_answer_cites_its_source_as_a_link(user_page: Any, alice_user: Any) -> None:
    results = {
        "results": [{"url": "https://gpt-oss.example/", "title": "GPT OSS", "content": "Open weights."}]
    }
    body = json.dumps(results).encode()
    with serve(lambda hit: Reply(200, body, {"Content-Type": "application/json"})) as searx:
        ToolSettings.objects.update_or_create(pk=1, defaults={"search_url": f"{searx.url}/search"})
        chat, reply = _answer_with_tool(user_page, alice_user, "browser", "Please search the web")
    assert len(searx.hits) == 1 and json.loads(SEARCH_CALL)["query"] in searx.hits[0].path
    card = _card(chat, reply)
    expect(card.locator(".tool-name")).to_have_text("browser.search")
    link = chat.content(reply).locator('a[href="https://gpt-oss.example/"]')
    expect(link).to_have_count(1)
    assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    assert "gpt-oss.example" in Message.objects.get(pk=reply).tool_calls[0]["result"]
