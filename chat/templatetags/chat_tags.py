from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from chat.rendering import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    """Render *text* as sanitized Markdown (chat.rendering guarantees it is safe)."""
    return mark_safe(render_markdown(text or ""))  # noqa: S308
