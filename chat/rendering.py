"""Render user and model text as sanitized Markdown: no script, no event handler, nothing loaded off-site."""

from __future__ import annotations

import html
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "span",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "span": {"class"},
    "pre": {"class", "data-lang"},
    "code": {"class"},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
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
    # Images would load off-site resources: show them as links instead.
    md.add_render_rule("image", _image_as_link)
    return md


def _image_as_link(self: object, tokens: list, idx: int, options: object, env: object) -> str:
    token = tokens[idx]
    src = html.escape(str(token.attrGet("src") or ""))
    alt = html.escape(token.content or src)
    return f'<a href="{src}">{alt}</a>'


def render_markdown(text: str) -> str:
    """Return *text* rendered as Markdown and sanitized: safe to insert into the page as HTML."""
    return nh3.clean(
        _markdown().render(text),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        filter_style_properties={"text-align"},
    )


def pygments_css() -> str:
    """Return the syntax-highlighting stylesheet (light and dark) for static/css/code.css."""
    light = HtmlFormatter(style="friendly").get_style_defs(".codeblock")
    dark = HtmlFormatter(style="monokai").get_style_defs(".codeblock")
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"
