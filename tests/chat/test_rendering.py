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


# Math: TeX in the four usual delimiters becomes MathML on the server; everything else stays as it was.


def test_inline_and_displayed_math_become_mathml() -> None:
    html = render_markdown(r"Area $\pi r^2$ and \(x<y\).")
    assert html.count('<math display="inline">') == 2
    assert "<mi>π</mi>" in html and "<mo>&lt;</mo>" in html
    for displayed in (
        "$$\nE=mc^2\n$$",
        "So\n$$E=mc^2$$\nthus",
        "Line\n\\[\nE=mc^2\n\\]\nend",
        "\\[E=mc^2\\]",
    ):
        html = render_markdown(displayed)
        assert html.count('<math display="block">') == 1, displayed
        assert "<msup><mi>c</mi><mn>2</mn></msup>" in html, displayed


def test_prices_are_not_math() -> None:
    for text in ("It costs $5 and $6.", "From $5 to $10", "Pay $ 5 now or $x $ later", "$x$5 is not math"):
        html = render_markdown(text)
        assert "<math" not in html, text
        assert "$" in html, text


def test_code_spans_and_code_blocks_keep_their_dollars() -> None:
    html = render_markdown("Use `$x$` or `\\(y\\)`:\n\n```\necho $$ $HOME\n```\n\n    $$z$$\n")
    assert "<math" not in html
    assert "<code>$x$</code>" in html and "<code>\\(y\\)</code>" in html
    assert "echo $$ $HOME" in html and "$$z$$" in html


def test_escaped_delimiters_stay_text() -> None:
    html = render_markdown(r"Not math: \$x\$ and \\(y\\)")
    assert "<math" not in html
    assert "$x$" in html and "\\(y\\)" in html  # \\( is an escaped backslash, then a parenthesis


def test_a_malformed_formula_shows_as_its_source() -> None:
    html = render_markdown(r"Before $\sqrt[$ between \(x^\) and $$\left( x$$ after")
    assert "<math" not in html
    assert html == (
        '<p>Before <span class="math-source">$\\sqrt[$</span> between '
        '<span class="math-source">\\(x^\\)</span> and '
        '<span class="math-source">$$\\left( x$$</span> after</p>\n'
    )


def test_markup_in_a_formula_is_text() -> None:
    html = render_markdown(r"$\text{<script>alert(1)</script><b>&amp;</b>}$ and $x<img src=y onerror=z>$")
    assert (
        "<script" not in html and "<b>" not in html and "<img" not in html and "onerror=" not in html.lower()
    )
    assert "<mtext>&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;&amp;amp;&lt;/b&gt;</mtext>" in html


def test_mathml_keeps_only_the_allowed_attributes() -> None:
    html = render_markdown(
        r'$\href{javascript:alert(1)}{x} \color{red" onclick="y}{z} \left(\frac{a}{b}\right)$'
    )
    assert "javascript" not in html and "href" not in html
    assert 'mathcolor="red&quot; onclick=&quot;y"' in html  # a value, escaped: no handler
    assert 'stretchy="true"' in html and "<mfrac>" in html
    assert 'xmlns="' not in html  # the HTML parser puts <math> in the MathML namespace by itself
