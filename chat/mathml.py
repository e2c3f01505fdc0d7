"""TeX math in Markdown, rendered on the server to MathML: the browser shows it with no script at all.

Four delimiters, as the models write them: ``$...$`` and ``\\(...\\)`` inline, ``$$...$$`` and ``\\[...\\]``
displayed. A dollar is math only by the usual rules (pandoc's): no space after the opening ``$``, none before
the closing one, and no digit right after the closing one, so that "$5 and $6" stays prices. Code spans and
code blocks are left alone. A formula that cannot be converted stays its source text.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from xml.etree.ElementTree import Element, tostring

from latex2mathml.converter import Converter
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin

logger = logging.getLogger(__name__)

# What latex2mathml writes, and nothing else: the sanitizer (chat/rendering.py) keeps exactly these.
_PRESENTATION = {"mathvariant", "mathcolor", "mathbackground", "mathsize", "displaystyle", "scriptlevel"}
MATHML_ATTRIBUTES: dict[str, set[str]] = {
    "math": {"display"},
    "mrow": set(),
    "mi": set(),
    "mn": set(),
    "mtext": set(),
    "mo": {"stretchy", "fence", "form", "separator", "accent", "largeop", "movablelimits", "lspace", "rspace",
           "minsize", "maxsize"},
    "mspace": {"width", "height", "depth", "linebreak"},
    "mstyle": set(),
    "mpadded": {"width", "height", "depth", "voffset"},
    "mphantom": set(),
    "menclose": {"notation"},
    "mfrac": {"linethickness"},
    "msqrt": set(),
    "mroot": set(),
    "msub": set(),
    "msup": set(),
    "msubsup": set(),
    "munder": {"accentunder"},
    "mover": {"accent"},
    "munderover": {"accent", "accentunder"},
    "mtable": {"columnalign", "rowspacing", "columnspacing", "columnlines", "rowlines", "frame"},
    "mtr": set(),
    "mtd": {"columnalign", "columnspan", "rowspan"},
}  # fmt: skip
for _attributes in MATHML_ATTRIBUTES.values():
    _attributes |= _PRESENTATION

_CLOSING = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}


def tex_to_mathml(tex: str, *, display: bool) -> str | None:
    """Return *tex* as a ``<math>`` element, or None when it is not a formula latex2mathml can read."""
    try:
        root = Converter(display="block" if display else "inline").convert_to_element(tex)
    except Exception:  # its parser fails in many ways: its own errors, IndexError, RecursionError
        logger.debug("Formula not converted; shown as its source", exc_info=True)
        return None
    # latex2mathml keeps symbols as character references (&#x003C9;) in the element text and un-escapes the
    # markup it serializes, so that \text{<b>} would come out as a tag: decode its references and let
    # ElementTree escape everything once.
    for node in root.iter():
        _decode(node)
    return tostring(root, encoding="unicode")


_CHARACTER_REFERENCE = re.compile(r"&#x([0-9a-fA-F]{1,6});")


def _characters(text: str) -> str:
    return _CHARACTER_REFERENCE.sub(lambda m: chr(min(int(m.group(1), 16), 0x10FFFF)), text)


def _decode(node: Element) -> None:
    if node.text:
        node.text = _characters(node.text)
    if node.tail:
        node.tail = _characters(node.tail)


def _render(token: Token, *, display: bool) -> str:
    source = token.content.strip()
    mathml = tex_to_mathml(source, display=display) if source else None
    if mathml is None:
        closing = _CLOSING.get(token.markup, token.markup)
        return f'<span class="math-source">{html.escape(token.markup + token.content + closing)}</span>'
    return mathml


def _inline(self: object, tokens: Sequence[Token], idx: int, options: object, env: object) -> str:
    return _render(tokens[idx], display=False)


def _displayed(self: object, tokens: Sequence[Token], idx: int, options: object, env: object) -> str:
    return _render(tokens[idx], display=True)


def _block(self: object, tokens: Sequence[Token], idx: int, options: object, env: object) -> str:
    return _render(tokens[idx], display=True) + "\n"


def _math_brackets(state: StateInline, silent: bool) -> bool:
    r"""Read ``\(...\)`` (inline) or ``\[...\]`` (displayed) at the position; a paragraph may hold either.

    It runs before CommonMark's backslash escapes, which would otherwise make ``\(`` a plain ``(``.
    """
    src, start = state.src, state.pos
    opening = src[start : start + 2]
    if opening not in ("\\(", "\\["):
        return False
    closing = _CLOSING[opening]
    end = src.find(closing, start + 2)
    while end != -1 and _escaped(src, end):
        end = src.find(closing, end + 1)
    if end == -1 or not src[start + 2 : end].strip():
        return False
    if not silent:
        token = state.push("math_inline" if opening == "\\(" else "math_inline_double", "math", 0)
        token.content = src[start + 2 : end]
        token.markup = opening
    state.pos = end + 2
    return True


def _escaped(src: str, pos: int) -> bool:
    """Whether the backslash at *pos* is itself escaped (an odd number of backslashes before it)."""
    count = 0
    while pos - count - 1 >= 0 and src[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def math_plugin(md: MarkdownIt) -> None:
    """Teach *md* the four math delimiters, rendered to MathML (or to their source when unreadable)."""
    dollarmath_plugin(
        md,
        allow_space=False,
        allow_digits=False,
        double_inline=True,
        allow_labels=False,
        allow_blank_lines=False,
    )
    md.inline.ruler.before("escape", "math_brackets", _math_brackets)
    md.add_render_rule("math_inline", _inline)
    md.add_render_rule("math_inline_double", _displayed)
    md.add_render_rule("math_block", _block)
