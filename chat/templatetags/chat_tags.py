from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from chat.rendering import message_sources, render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str, tool_calls: list[dict] | None = None) -> SafeString:
    """Render *text* as sanitized Markdown (chat.rendering guarantees it is safe).

    ``{{ message.content|markdown:message.tool_calls }}`` also turns the browser citations into links.
    """
    sources = message_sources(tool_calls) if tool_calls else None
    return mark_safe(render_markdown(text or "", sources))  # noqa: S308
