"""Every text colour meets WCAG AA (4.5:1) on the backgrounds it is shown on, in light and dark schemes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chat.rendering import pygments_css

CSS = Path(__file__).resolve().parent.parent / "static" / "css"
AA = 4.5

# Text colour on background, as the stylesheet uses them (static/css/app.css).
PAIRS = [
    ("fg", "bg"), ("fg", "bg-soft"), ("fg", "bg-sidebar"), ("fg", "user-bubble"), ("fg", "accent-soft"),
    ("fg", "ok-soft"),
    # Sidebar times (on the active conversation too), message figures, badges, reasoning, hints, labels.
    ("muted", "bg"), ("muted", "bg-soft"), ("muted", "bg-sidebar"), ("muted", "accent-soft"),
    ("muted", "user-bubble"),
    ("accent", "bg"), ("accent", "bg-soft"), ("accent-fg", "accent"),
    ("danger", "bg"), ("danger", "danger-soft"), ("warn", "bg"),
]  # fmt: skip


def luminance(colour: str) -> float:
    hex_ = colour.lstrip("#")
    if len(hex_) == 3:
        hex_ = "".join(c * 2 for c in hex_)
    channels = [int(hex_[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def palettes() -> dict[str, dict[str, str]]:
    """The custom properties of app.css: the light ones, and the dark ones over them."""
    css = (CSS / "app.css").read_text()
    light_block = re.search(r":root \{(.*?)\}", css, re.S)
    dark_block = re.search(r"prefers-color-scheme: dark\) \{\s*:root \{(.*?)\}", css, re.S)
    assert light_block and dark_block

    def read(block: str) -> dict[str, str]:
        return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})\b", block))

    light = read(light_block.group(1))
    return {"light": light, "dark": {**light, **read(dark_block.group(1))}}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_page_colours_meet_aa(scheme: str) -> None:
    colours = palettes()[scheme]
    low = {
        f"{fg} on {bg}": round(contrast(colours[fg], colours[bg]), 2)
        for fg, bg in PAIRS
        if contrast(colours[fg], colours[bg]) < AA
    }
    assert low == {}


def test_the_sidebar_times_meet_aa_on_the_active_conversation() -> None:
    """The case that failed before (4.4:1): muted text on the active conversation's accent background."""
    light = palettes()["light"]
    assert contrast(light["muted"], light["accent-soft"]) >= AA


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_highlighted_token_meets_aa_on_the_code_block(scheme: str) -> None:
    css = (CSS / "code.css").read_text()
    light, dark = css.split("@media (prefers-color-scheme: dark)")
    rules = light if scheme == "light" else dark
    background = palettes()[scheme]["bg-soft"]  # app.css gives .codeblock this background in both schemes
    low = {}
    for selector, body in re.findall(r"\.codeblock (\.[\w.]+) \{([^}]*)\}", rules):
        colour = re.search(r"(?<!-)color: (#[0-9a-fA-F]{3,6})", body)
        own = re.search(r"background-color: (#[0-9a-fA-F]{3,6})", body)
        if selector == ".hll" or not colour:
            continue  # .hll marks highlighted lines (a background; none are highlighted here)
        ratio = contrast(colour.group(1), own.group(1) if own else background)
        if ratio < AA:
            low[selector] = round(ratio, 2)
    assert low == {}


def test_the_code_stylesheet_is_the_one_pygments_writes() -> None:
    assert (CSS / "code.css").read_text() == pygments_css()
