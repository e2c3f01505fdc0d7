"""tool_run: every call gives the model a result it can read, whatever goes wrong; nothing runs undeclared."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.core.exceptions import ValidationError

from inference.runtime.harmony import FunctionSpec, ToolCall
from inference.tools.models import Function, ToolSettings
from inference.tools.toolset import Toolset, tool_run
from tests.fakes import FakeServer, Hit, Reply, serve

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = Toolset(functions=(FunctionSpec("get_weather", "Weather.", SCHEMA),))
BROWSER = Toolset(browser=True)


def call(recipient: str, arguments: str, channel: str = "commentary") -> ToolCall:
    return ToolCall(recipient=recipient, channel=channel, content_type=None, arguments=arguments)


@pytest.fixture
def endpoint() -> Iterator[FakeServer]:
    def handler(hit: Hit) -> Reply:
        if hit.path == "/fail":
            return Reply(500, b"database is down")
        if hit.path == "/big":
            return Reply(200, b"y" * 100_000)
        return Reply(200, json.dumps({"echo": json.loads(hit.body)}).encode())

    with serve(handler) as server:
        yield server


def weather(url: str) -> Function:
    return Function.objects.create(name="get_weather", description="Weather.", parameters=SCHEMA, url=url)


def test_invalid_json_arguments_are_an_error_and_the_endpoint_is_not_called(endpoint: FakeServer) -> None:
    weather(f"{endpoint.url}/ok")
    result = tool_run(call=call("functions.get_weather", '{"city": "Par'), toolset=WEATHER, conversation_id=1)
    assert result.error and result.text.startswith("Error: The arguments are not valid JSON")
    result = tool_run(
        call=call("functions.get_weather", '{"town": "Paris"}'), toolset=WEATHER, conversation_id=1
    )
    assert (
        result.error and result.text == "Error: Invalid arguments (arguments: 'city' is a required property)."
    )
    assert endpoint.hits == []


def test_the_endpoint_gets_exactly_the_arguments_and_errors_come_back_readable(endpoint: FakeServer) -> None:
    function = weather(f"{endpoint.url}/ok")
    result = tool_run(
        call=call("functions.get_weather", '{"city": "Zürich"}'), toolset=WEATHER, conversation_id=1
    )
    assert (result.error, json.loads(result.text)) == (False, {"echo": {"city": "Zürich"}})
    assert json.loads(endpoint.hits[0].body) == {"city": "Zürich"}
    function.url = f"{endpoint.url}/fail"
    function.save()
    result = tool_run(
        call=call("functions.get_weather", '{"city": "Paris"}'), toolset=WEATHER, conversation_id=1
    )
    assert (
        result.error and result.text == "Error: The function get_weather answered HTTP 500: database is down"
    )
    function.url = f"{endpoint.url}/big"
    function.save()
    result = tool_run(
        call=call("functions.get_weather", '{"city": "Paris"}'), toolset=WEATHER, conversation_id=1
    )
    assert not result.error and result.text.endswith("[output truncated: more than 8000 characters]")
    assert len(result.text) < 8100


def test_an_unreachable_endpoint_is_an_error() -> None:
    weather("http://127.0.0.1:9/nothing-listens-here")
    result = tool_run(
        call=call("functions.get_weather", '{"city": "Paris"}'), toolset=WEATHER, conversation_id=1
    )
    assert (
        result.error
        and result.text == "Error: The function get_weather could not be reached (connection failed)."
    )


def test_unknown_recipients_and_undeclared_tools_run_nothing(endpoint: FakeServer) -> None:
    weather(f"{endpoint.url}/ok")
    everything = Toolset(browser=True, python=True, functions=WEATHER.functions)
    for recipient, toolset in [
        ("functions.get_weather", Toolset()),
        ("functions.rm_rf", everything),
        ("container.exec", everything),
        ("browser.delete", everything),
        ("python", Toolset(browser=True)),
        ("", everything),
    ]:
        result = tool_run(call=call(recipient, '{"city": "Paris"}'), toolset=toolset, conversation_id=1)
        assert (
            result.error
            and result.text == f"Error: the tool {recipient!r} is not available in this conversation."
        )
        assert result.record["recipient"] == recipient and result.record["error"] is True
    assert endpoint.hits == []


def test_python_output_is_capped_and_errors_are_flagged() -> None:
    python = Toolset(python=True)
    result = tool_run(
        call=call("python", "print('x' * 10**6)", "analysis"), toolset=python, conversation_id=1
    )
    assert result.text.endswith("[output truncated: the code printed more than 7900 bytes]")
    assert result.text.count("[output truncated") == 1 and len(result.text) <= 8000
    result = tool_run(call=call("python", "1/0", "analysis"), toolset=python, conversation_id=1)
    assert result.error and "ZeroDivisionError" in result.text


PAGE = b"""<html><head><title>Tiny wiki</title><style>p{}</style><script>secret()</script></head>
<body><h1>Welcome</h1><p>The wiki says the answer is <b>42</b>.</p>
<p>See <a href="/other">the other page</a> and <a href="javascript:alert(1)">a trap</a>.</p></body></html>"""


@pytest.fixture
def wiki() -> Iterator[FakeServer]:
    def handler(hit: Hit) -> Reply:
        if hit.path.startswith("/search"):
            results = [{"url": "http://127.0.0.2/wiki", "title": "Tiny wiki", "content": "the answer"}]
            return Reply(200, json.dumps({"results": results}).encode(), {"Content-Type": "application/json"})
        if hit.path == "/image":
            return Reply(200, b"\x89PNG\r\n", {"Content-Type": "image/png"})
        if hit.path == "/other":
            return Reply(200, b"<p>Other page text.</p>")
        return Reply(200, PAGE)

    with serve(handler, host="127.0.0.2") as server:
        ToolSettings.objects.update_or_create(
            pk=1, defaults={"search_url": f"{server.url}/search", "fetch_allowlist": "127.0.0.2"}
        )
        yield server


def test_open_and_find_work_on_numbered_lines_and_links_kept_per_conversation(wiki: FakeServer) -> None:
    opened = tool_run(
        call=call("browser.open", json.dumps({"id": f"{wiki.url}/wiki"})), toolset=BROWSER, conversation_id=7
    )
    assert not opened.error, opened.text
    assert opened.text.startswith(f"[0] Tiny wiki ({wiki.url}/wiki)\n**viewing lines [0 - 2] of 2**")
    assert "L1: The wiki says the answer is 42." in opened.text
    assert "L2: See 【0†the other page】 and a trap." in opened.text
    assert "secret()" not in opened.text and "p{}" not in opened.text
    assert opened.record["sources"] == [{"cursor": 0, "url": f"{wiki.url}/wiki", "title": "Tiny wiki"}]
    link = tool_run(call=call("browser.open", '{"id": 0, "cursor": 0}'), toolset=BROWSER, conversation_id=7)
    assert link.text.startswith(f"[1] {wiki.url}/other") and "L0: Other page text." in link.text
    found = tool_run(
        call=call("browser.find", '{"pattern": "ANSWER", "cursor": 0}'), toolset=BROWSER, conversation_id=7
    )
    assert "L1: The wiki says the answer is 42." in found.text and found.text.startswith("[2] Find results")
    image = tool_run(
        call=call("browser.open", json.dumps({"id": f"{wiki.url}/image"})), toolset=BROWSER, conversation_id=7
    )
    assert (
        image.error
        and image.text == f"Error: {wiki.url}/image is image/png, which the browser cannot show as text."
    )
    # Another conversation has its own cursors.
    other = tool_run(call=call("browser.open", '{"id": 0, "cursor": 0}'), toolset=BROWSER, conversation_id=8)
    assert other.error and other.text == "Error: There is no page with cursor 0."


def test_bad_browser_arguments_are_errors(wiki: FakeServer) -> None:
    for arguments, message in [
        ("not json", "Error: the arguments are not valid JSON"),
        ("[1, 2]", "Error: the arguments must be a JSON object."),
        ('{"query": ""}', "Error: browser.search needs a non-empty 'query' string."),
    ]:
        result = tool_run(call=call("browser.search", arguments), toolset=BROWSER, conversation_id=9)
        assert result.error and result.text.startswith(message)
    result = tool_run(
        call=call("browser.open", '{"id": "http://127.0.0.1:9/"}'), toolset=BROWSER, conversation_id=9
    )
    assert result.error and "private or reserved" in result.text
    assert wiki.hits == []


def test_a_search_endpoint_that_does_not_answer_is_an_error() -> None:
    ToolSettings.objects.update_or_create(pk=1, defaults={"search_url": "http://127.0.0.1:9/search"})
    result = tool_run(call=call("browser.search", '{"query": "x"}'), toolset=BROWSER, conversation_id=1)
    assert result.error and result.text.startswith("Error: The search service is unavailable:")


def test_admin_validates_function_schemas_and_the_allowlist() -> None:
    function = Function(
        name="ok_name", description="d", url="http://x.internal/", parameters={"type": "nope"}
    )
    with pytest.raises(ValidationError, match="Not a valid JSON schema"):
        function.full_clean()
    function.parameters = {"type": "array"}
    with pytest.raises(ValidationError, match="object"):
        function.full_clean()
    function.parameters = SCHEMA
    function.name = "bad name!"
    with pytest.raises(ValidationError, match="Letters, digits"):
        function.full_clean()
    settings = ToolSettings(fetch_allowlist="wiki.internal\n10.1.2.0/24\nnot a host!")
    with pytest.raises(ValidationError, match="neither a host name nor a network"):
        settings.full_clean()
