from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def gib(n: int | None) -> str:
    """Format a byte count as GiB with one decimal."""
    return f"{(n or 0) / 1024**3:.1f} GiB"
