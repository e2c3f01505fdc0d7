"""Render user and model text as sanitized Markdown: no script, no event handler, nothing loaded off-site."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from chat.mathml import MATHML_ATTRIBUTES, math_plugin
from inference.tools.records import ToolCallRecord, ToolSource

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "span",
    *MATHML_ATTRIBUTES,
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "class"},
    "span": {"class"},
    "pre": {"class", "data-lang"},
    "code": {"class"},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
    **MATHML_ATTRIBUTES,
}
_FORMATTER = HtmlFormatter(nowrap=True, classes=True)


def _highlight(code: str, lang: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    body = highlight(code, lexer, _FORMATTER) if lexer else html.escape(code)
    label = html.escape(lang or "text")
    # Starting with <pre tells markdown-it to use this block as it is.
    return f'<pre class="codeblock" data-lang="{label}"><code>{body}</code></pre>'


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # Raw HTML in the source is shown as text, never interpreted: model output is untrusted.
    md = MarkdownIt(
        "commonmark", {"html": False, "linkify": False, "typographer": False, "highlight": _highlight}
    )
    md.enable(["table", "strikethrough"])
    # TeX formulas become MathML here, on the server: no script renders them in the browser.
    md.use(math_plugin)
    # Images would load off-site resources: show them as links instead.
    md.add_render_rule("image", _image_as_link)
    return md


def _image_as_link(self: object, tokens: list, idx: int, options: object, env: object) -> str:
    token = tokens[idx]
    src = html.escape(str(token.attrGet("src") or ""))
    alt = html.escape(token.content or src)
    return f'<a href="{src}">{alt}</a>'


# gpt-oss cites what its browser showed as 【cursor†Lx-Ly】 (or 【cursor†Lx】).
_CITATION = re.compile(r"【(\d+)†L(\d+)(?:-L?(\d+))?】")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")

Sources = Mapping[int, ToolSource]


def message_sources(tool_calls: Iterable[ToolCallRecord] | None) -> dict[int, ToolSource]:
    """Return the pages a message's browser calls produced, by cursor (from ``Message.tool_calls``)."""
    sources: dict[int, ToolSource] = {}
    for call in tool_calls or ():
        for source in call.get("sources") or ():
            if isinstance(source, Mapping) and isinstance(source.get("cursor"), int):
                sources[source["cursor"]] = source
    return sources


def _citation_url(source: ToolSource, first: int, last: int) -> str:
    lines = source.get("lines") or {}
    for line in range(first, max(first, last) + 1):
        if str(line) in lines:
            return str(lines[str(line)])
    return str(source.get("url") or "")


def _link_citations(text: str, sources: Sources) -> tuple[str, list[str]]:
    """Replace each citation with a placeholder that Markdown leaves alone; return the links to put there."""
    links: list[str] = []

    def replace(match: re.Match[str]) -> str:
        source = sources.get(int(match.group(1)))
        first = int(match.group(2))
        url = _citation_url(source, first, int(match.group(3) or first)) if source else ""
        if urlsplit(url).scheme not in {"http", "https"}:
            return match.group(0)
        label = urlsplit(url).hostname or url
        title = str(source.get("title") or url) if source else url
        href, tip, text = html.escape(url), html.escape(title), html.escape(label)
        links.append(f'<a class="citation" href="{href}" title="{tip}">{text}</a>')
        return f"\ue000{len(links) - 1}\ue001"

    return _CITATION.sub(replace, text), links


def render_markdown(text: str, sources: Sources | None = None) -> str:
    """Return *text* rendered as Markdown and sanitized: safe to insert into the page as HTML.

    With *sources* (see :func:`message_sources`), the model's citations become links to the pages cited.
    """
    links: list[str] = []
    if sources:
        text, links = _link_citations(text.replace("\ue000", "").replace("\ue001", ""), sources)
    rendered = _markdown().render(text)
    if links:
        rendered = _PLACEHOLDER.sub(lambda m: links[int(m.group(1))], rendered)
    return nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        filter_style_properties={"text-align"},
    )


def pygments_css() -> str:
    """Return the syntax-highlighting stylesheet (light and dark) for static/css/code.css."""
    # Both keep every token's colour at 4.5:1 or more on the code block's background (tests/test_contrast.py).
    light = HtmlFormatter(style="xcode").get_style_defs(".codeblock")
    dark = HtmlFormatter(style="monokai").get_style_defs(".codeblock")
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"
