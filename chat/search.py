"""Full-text search over the conversations a user may read: their titles and message text, and on request the
model's reasoning. Of each conversation only the branch on screen is searched (`Message.on_branch`, kept on
each row so that the match needs no walk of the tree): a hit always opens on a message the page shows.

PostgreSQL does the work: each text has a stored generated `tsvector` (English stemming and stop words)
with a GIN index (chat/migrations/0009_search_vectors.py). All the words must match, the last one typed as
a prefix (`llam` finds "llama"), and the best hits come first: conversations whose title matches, then
messages by `ts_rank` (normalized by the text's length, so a short focused message beats a passing mention
in a long one; a match in the reasoning counts half), the newest first among equals.

Ranking reads every hit it ranks, so a query that matches more than `RANKED_MATCHES` messages (by the
planner's estimate: "error" in tens of thousands of them) is ranked among about its newest `RANKED_MATCHES`
matches, and over all of them only when those hold less than a page of the user's hits. A rarer query is
ranked over all its matches, which is cheap exactly because they are few (docs/benchmarks.md, "Search").

Snippets come from `ts_headline` over the HTML-escaped text, with random markers around the matches, which
become `<mark>` only after `<` and `>` are escaped once more: the marks are the only markup a snippet holds.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import unescape
from typing import TYPE_CHECKING, TypedDict

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

if TYPE_CHECKING:  # the models need the app registry: this module is imported before it is ready too
    from django.contrib.auth.models import User

MAX_TERMS = 8
MAX_TERM_CHARS = 64
LIMIT = 20
# A query expected to match more messages than this (everybody's) is ranked among about this many of its
# newest matches.
RANKED_MATCHES = 1_000
# A text this short is its own snippet; a longer one is cut to the passages around its matches.
WHOLE_TEXT_CHARS = 240
# Letters and digits; everything else (punctuation, `_`, quotes) separates words, as PostgreSQL's parser does.
_WORD = re.compile(r"[^\W_]+")
_MARKS = re.compile(r"(</?mark>)")

# The conversations a user may search: today only their own, never an API call's ephemeral one. Shared
# conversations, once they exist, join here (a UNION with the shares granted to the user) and nowhere else.
_VISIBLE = "SELECT id FROM chat_conversation WHERE owner_id = %(user)s AND NOT ephemeral"

# The query is written out at each use, not taken from a CTE: as a constant the planner sees which words it
# holds and how common they are, and picks the index that suits them.
_QUERY = "to_tsquery('english', %(query)s)"

_MESSAGE_MATCH = {
    False: f"m.content_tsv @@ {_QUERY}",
    True: f"(m.content_tsv @@ {_QUERY} OR m.reasoning_tsv @@ {_QUERY})",
}


def _escaped(column: str) -> str:
    """Return SQL that HTML-escapes *column* before ts_headline sees it: its parser would drop `<div>` and the
    like from a snippet as markup, while `&lt;div&gt;` stays text."""
    return f"replace(replace(replace({column}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"


_ESTIMATE_SQL = "EXPLAIN (FORMAT JSON) SELECT 1 FROM chat_message m WHERE {match}"

_SQL = """
WITH hits AS (
    (SELECT c.id AS conversation_id, NULL::bigint AS message_id, false AS in_reasoning,
            1 + ts_rank(c.title_tsv, {q}, 33) AS rank, c.updated_at AS at
     FROM chat_conversation c
     WHERE c.id IN ({visible}) AND c.title_tsv @@ {q})
    UNION ALL
    (SELECT m.conversation_id, m.id, NOT m.content_tsv @@ {q},
            CASE WHEN m.content_tsv @@ {q} THEN ts_rank(m.content_tsv, {q}, 33)
                 ELSE 0.5 * ts_rank(m.reasoning_tsv, {q}, 33) END,
            m.created_at
     FROM chat_message m
     WHERE m.conversation_id IN ({visible}) AND m.on_branch AND {match}
       AND m.id > %(after)s)
),
top AS (SELECT * FROM hits ORDER BY rank DESC, at DESC, message_id DESC NULLS FIRST LIMIT %(limit)s)
SELECT top.conversation_id, top.message_id, top.in_reasoning, top.rank, top.at, coalesce(m.role, ''),
       c.archived_at IS NOT NULL,
       ts_headline('english', {title}, {q}, %(title_options)s),
       CASE WHEN top.message_id IS NULL THEN ''
            WHEN top.in_reasoning THEN ts_headline('english', {reasoning}, {q},
                 CASE WHEN length(m.reasoning) <= {whole} THEN %(whole)s ELSE %(snippet_options)s END)
            ELSE ts_headline('english', {content}, {q},
                 CASE WHEN length(m.content) <= {whole} THEN %(whole)s ELSE %(snippet_options)s END) END
FROM top
JOIN chat_conversation c ON c.id = top.conversation_id
LEFT JOIN chat_message m ON m.id = top.message_id
ORDER BY top.rank DESC, top.at DESC, top.message_id DESC NULLS FIRST
"""


@dataclass(frozen=True)
class SearchHit:
    """One result: a message whose text (or reasoning) matched, or a conversation whose title matched."""

    conversation_id: int
    message_id: int | None  # None: the title matched
    in_reasoning: bool
    rank: float
    at: datetime  # when the message was written, or the conversation last active
    role: str  # "user" or "assistant"; "" for a title hit
    title_html: SafeString  # the conversation's title, escaped, matches in <mark>
    snippet_html: SafeString  # the matching passage, escaped, matches in <mark>; "" for a title hit
    archived: bool = False  # the conversation is archived (out of the sidebar): the hit says so

    @property
    def when(self) -> str:
        """Say how long ago: "just now", "3 days ago"."""
        if timezone.now() - self.at < timedelta(minutes=1):
            return "just now"
        return f"{timesince(self.at, depth=1)} ago"

    @property
    def url(self) -> str:
        """Where the hit opens: the conversation, scrolled to the message."""
        url = reverse("chat:conversation", args=[self.conversation_id])
        if self.message_id is None:
            return url
        return f"{url}#message-{self.message_id}"


def prefix_query(text: str) -> str:
    """Return *text* as a `to_tsquery` expression: all its words required, the last one as a prefix.

    The last word is the one being typed (`llam` finds "llama"); the ones before it are whole, which also
    spares the index a prefix scan, the costly kind for a common word. The words hold letters and digits
    only, so quoting them is safe; `to_tsquery('english', …)` then stems them and drops stop words.
    "" when *text* has no word.
    """
    terms = [term[:MAX_TERM_CHARS] for term in _WORD.findall(text.lower())[:MAX_TERMS]]
    return " & ".join([*(f"'{term}'" for term in terms[:-1]), *(f"'{term}':*" for term in terms[-1:])])


def _marked(headline: str, start: str, stop: str) -> SafeString:
    """Turn the match markers of *headline* (a text escaped before ts_headline cut it) into <mark> elements.

    `<` and `>` are escaped once more first, whatever ts_headline did: the marks are the only markup the
    result can hold. The markers are letters and digits, which no escaping touches.
    """
    text = headline.replace("<", "&lt;").replace(">", "&gt;")
    return mark_safe(text.replace(start, "<mark>").replace(stop, "</mark>"))  # noqa: S308


def _newest_matches_after(cursor: CursorWrapper, match: str, query: str) -> int:
    """Return the message id after which *query* is expected to match about `RANKED_MATCHES` messages, or 0
    when it is expected to match fewer than that in all (then every match is ranked).

    The expectation is the planner's own estimate (`EXPLAIN` plans the query without running it, from the
    words' statistics), and message ids grow with time, so the window holds the newest matches.
    """
    cursor.execute(_ESTIMATE_SQL.format(match=match), {"query": query})
    row = cursor.fetchone()
    plan = row[0] if row else [{"Plan": {"Plan Rows": 0}}]
    expected = float((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])
    if expected <= RANKED_MATCHES:
        return 0
    cursor.execute("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM chat_message")
    ids = cursor.fetchone()
    oldest, newest = (int(ids[0]), int(ids[1])) if ids else (0, 0)
    return max(0, newest - int((newest - oldest) * RANKED_MATCHES / expected))


def search(*, user: User, text: str, include_reasoning: bool = False, limit: int = LIMIT) -> list[SearchHit]:
    """Return the best *limit* hits for *text* among the conversations *user* may read, best first."""
    query = prefix_query(text)
    if not query:
        return []
    # Markers nobody can type in advance: a fresh random token per search.
    token = secrets.token_hex(8)
    start, stop = f"hlstart{token}", f"hlstop{token}"
    marks = f"StartSel={start}, StopSel={stop}"
    sql = _SQL.format(
        q=_QUERY,
        visible=_VISIBLE,
        match=_MESSAGE_MATCH[include_reasoning],
        title=_escaped("coalesce(nullif(c.title, ''), 'New conversation')"),
        reasoning=_escaped("m.reasoning"),
        content=_escaped("m.content"),
        whole=WHOLE_TEXT_CHARS,
    )
    params: dict[str, str | int] = {
        "after": 0,
        "query": query,
        "user": user.pk,
        "limit": limit,
        "title_options": f"{marks}, HighlightAll=true",
        "whole": f"{marks}, HighlightAll=true",
        "snippet_options": f'{marks}, MaxFragments=2, MaxWords=24, MinWords=12, FragmentDelimiter=" … "',
    }
    with connection.cursor() as cursor:
        after = _newest_matches_after(cursor, _MESSAGE_MATCH[include_reasoning], query)
        rows = []
        if after > 0:
            cursor.execute(sql, {**params, "after": after})
            rows = cursor.fetchall()
        if len(rows) < limit:  # too few among the newest: rank them all
            params["after"] = 0
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    return [
        SearchHit(
            conversation_id=conversation_id,
            message_id=message_id,
            in_reasoning=in_reasoning,
            rank=rank,
            at=at,
            role=role,
            title_html=_marked(title, start, stop),
            snippet_html=_marked(snippet, start, stop),
            archived=archived,
        )
        for conversation_id, message_id, in_reasoning, rank, at, role, archived, title, snippet in rows
    ]


class HitJson(TypedDict):
    """A hit as the search palette receives it: text and marked parts, for the browser to set as text."""

    url: str
    conversation: int
    message: int | None
    role: str
    in_reasoning: bool
    archived: bool  # the conversation is archived: the palette marks the hit
    at: str
    when: str  # "3 days ago"
    title: list[tuple[str, bool]]
    snippet: list[tuple[str, bool]]


def marked_parts(html: SafeString) -> list[tuple[str, bool]]:
    """Split a snippet from `search()` into (plain text, marked?) parts."""
    parts = []
    marked = False
    for piece in _MARKS.split(str(html)):
        if piece in ("<mark>", "</mark>"):
            marked = piece == "<mark>"
        elif piece:
            parts.append((unescape(piece), marked))
    return parts


def hit_json(hit: SearchHit) -> HitJson:
    """Return *hit* as the search palette receives it."""
    return {
        "url": hit.url,
        "conversation": hit.conversation_id,
        "message": hit.message_id,
        "role": hit.role,
        "in_reasoning": hit.in_reasoning,
        "archived": hit.archived,
        "at": hit.at.isoformat(),
        "when": hit.when,
        "title": marked_parts(hit.title_html),
        "snippet": marked_parts(hit.snippet_html),
    }
