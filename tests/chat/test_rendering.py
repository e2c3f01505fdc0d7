"""Citations in answers become links to the pages the browser read; everything stays sanitized."""

from __future__ import annotations

from django.template import Context, Template

from chat.rendering import message_sources, render_markdown

TOOL_CALLS = [
    {"recipient": "python", "result": "42"},
    {
        "recipient": "browser.search",
        "sources": [
            {
                "cursor": 0,
                "url": "",
                "title": "Search results",
                "lines": {"1": "https://a.example/x", "2": "https://b.example/"},
            },
        ],
    },
    {
        "recipient": "browser.open",
        "sources": [
            {"cursor": 1, "url": "https://wiki.example/page?q=1&r=2", "title": 'A "quoted" <title>'},
            {"cursor": 2, "url": "javascript:alert(1)", "title": "trap"},
        ],
    },
]


def test_citations_link_to_the_cited_page_with_safe_rel() -> None:
    html = render_markdown("Fact 【0†L1-L2】 and 【1†L4】.", message_sources(TOOL_CALLS))
    assert html == (
        '<p>Fact <a class="citation" href="https://a.example/x" title="Search results" '
        'rel="noopener noreferrer nofollow">a.example</a> and <a class="citation" '
        'href="https://wiki.example/page?q=1&amp;r=2" title="A &quot;quoted&quot; &lt;title&gt;" '
        'rel="noopener noreferrer nofollow">wiki.example</a>.</p>\n'
    )


def test_citations_without_a_safe_source_stay_text() -> None:
    html = render_markdown("Trap 【2†L0】, unknown 【9†L1】.", message_sources(TOOL_CALLS))
    assert html == "<p>Trap 【2†L0】, unknown 【9†L1】.</p>\n"
    assert "javascript" not in html


def test_model_text_cannot_forge_a_placeholder_or_markup() -> None:
    html = render_markdown("\ue0000\ue001 <script>x()</script> 【1†L1】", message_sources(TOOL_CALLS))
    assert "<script>" not in html and html.count("<a ") == 1 and "\ue000" not in html


def test_the_markdown_filter_still_works_without_sources_and_takes_them_as_an_argument() -> None:
    template = Template("{% load chat_tags %}{{ text|markdown }}|{{ text|markdown:calls }}")
    out = template.render(Context({"text": "See 【1†L1】", "calls": TOOL_CALLS}))
    plain, linked = out.split("|")
    assert plain == "<p>See 【1†L1】</p>\n"
    assert 'href="https://wiki.example/page?q=1&amp;r=2"' in linked
