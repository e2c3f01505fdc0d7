"""gpt-oss's browser tool: search, open and find, over pages kept per conversation as numbered cursors.

Pages are reduced to text lines numbered ``L0``, ``L1``...; links become ``【n†text】`` and can be
opened by number, as in gpt-oss's reference browser. The model cites lines as ``【cursor†Lx-Ly】``;
each call's record lists the pages it produced (``sources``) so the answer's citations can link there.
This module is plain Python: the caller passes the session state in and stores it back.
"""

from __future__ import annotations

import html
import ipaddress
import json
import re
import textwrap
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from inference.tools.net import (
    Allowlist,
    FetchError,
    FetchLimits,
    Resolver,
    fetch,
    parse_host_address,
    system_resolver,
)
from inference.tools.records import ToolSource

LINE_WIDTH = 120
DEFAULT_VIEW_LINES = 40
MAX_PAGES = 40
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
    "article", "header", "footer", "pre", "blockquote", "hr", "dt", "dd", "nav", "main", "aside", "form",
}  # fmt: skip
_TEXT_TYPES = {"application/xhtml+xml", "application/json", "application/xml", "application/javascript"}
_SKIP_TAGS = {"script", "style", "noscript", "head", "template", "svg", "iframe", "object"}


class BrowserError(Exception):
    """A browser call that cannot be done; the message goes back to the model."""


@dataclass
class Page:
    url: str
    title: str
    lines: list[str]
    links: dict[str, str] = field(default_factory=dict)
    # For search results: the result URL each line belongs to (citations of those lines link there).
    line_urls: dict[str, str] = field(default_factory=dict)


@dataclass
class Session:
    """The pages one conversation has seen; a page's cursor is its number."""

    pages: dict[str, Page] = field(default_factory=dict)
    next_cursor: int = 0

    @classmethod
    def from_json(cls, data: Any) -> Session:
        if not isinstance(data, dict):
            return cls()
        pages = {k: Page(**v) for k, v in data.get("pages", {}).items()}
        return cls(pages=pages, next_cursor=int(data.get("next_cursor", 0)))

    def to_json(self) -> dict[str, Any]:
        return {"pages": {k: asdict(p) for k, p in self.pages.items()}, "next_cursor": self.next_cursor}

    def add(self, page: Page) -> int:
        cursor = self.next_cursor
        self.next_cursor += 1
        self.pages[str(cursor)] = page
        for old in sorted(self.pages, key=int)[:-MAX_PAGES]:
            del self.pages[old]
        return cursor

    def get(self, cursor: int) -> tuple[int, Page]:
        if cursor < 0:
            if not self.pages:
                raise BrowserError("No page is open yet: search or open a URL first.")
            cursor = max(int(k) for k in self.pages)
        page = self.pages.get(str(cursor))
        if page is None:
            raise BrowserError(f"There is no page with cursor {cursor}.")
        return cursor, page


@dataclass(frozen=True)
class BrowserConfig:
    search_url: str
    search_timeout_s: float
    allowlist: Allowlist
    limits: FetchLimits
    resolver: Resolver = system_resolver


@dataclass(frozen=True)
class BrowserOutput:
    text: str
    sources: list[ToolSource]


class _TextExtractor(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.parts: list[str] = []
        self.links: dict[str, str] = {}
        self.title = ""
        self._skip = 0
        self._in_title = False
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIP_TAGS:
            self._skip += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "a" and not self._skip:
            href = dict(attrs).get("href") or ""
            absolute = urljoin(self.base_url, href)
            self._href = absolute if urlsplit(absolute).scheme in {"http", "https"} else None
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIP_TAGS and self._skip:
            self._skip -= 1
        if tag == "a" and self._href is not None:
            text = " ".join("".join(self._link_text).split())
            number = str(len(self.links))
            self.links[number] = self._href
            self.parts.append(f"【{number}†{text or self._href}】")
            self._href = None
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._skip:
            return
        if self._href is not None:
            self._link_text.append(data)
        else:
            self.parts.append(data)


def _wrap(text: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            lines.extend(textwrap.wrap(paragraph, LINE_WIDTH, break_long_words=True, break_on_hyphens=False))
    return lines


def page_from_html(url: str, body: str) -> Page:
    """Reduce an HTML document to numbered text lines and numbered links."""
    parser = _TextExtractor(url)
    parser.feed(body)
    parser.close()
    title = " ".join(parser.title.split()) or url
    return Page(url=url, title=title, lines=_wrap("".join(parser.parts)), links=parser.links)


def _decode(body: bytes, content_type: str) -> str:
    match = re.search(r"charset=([\w-]+)", content_type, re.IGNORECASE)
    try:
        return body.decode(match.group(1) if match else "utf-8", "replace")
    except LookupError:
        return body.decode("utf-8", "replace")


def _view(cursor: int, page: Page, loc: int = 0, num_lines: int = DEFAULT_VIEW_LINES) -> str:
    total = len(page.lines)
    start = max(0, min(loc, max(total - 1, 0)))
    end = min(total, start + max(1, num_lines))
    header = f"[{cursor}] {page.title}" + (f" ({page.url})" if page.url else "")
    body = "\n".join(f"L{i}: {page.lines[i]}" for i in range(start, end))
    return f"{header}\n**viewing lines [{start} - {max(end - 1, start)}] of {max(total - 1, 0)}**\n\n{body}"


def _source(cursor: int, page: Page) -> ToolSource:
    source = ToolSource(cursor=cursor, url=page.url, title=page.title)
    if page.line_urls:
        source["lines"] = dict(page.line_urls)
    return source


def _int_arg(args: dict[str, Any], name: str, default: int) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BrowserError(f"{name!r} must be a number.")
    try:
        return int(value)
    except ValueError:
        raise BrowserError(f"{name!r} must be a number, not {value!r}.") from None


def search(session: Session, args: dict[str, Any], config: BrowserConfig) -> BrowserOutput:
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        raise BrowserError("browser.search needs a non-empty 'query' string.")
    topn = max(1, min(_int_arg(args, "topn", 5), 10))
    if not config.search_url:
        raise BrowserError("No search endpoint is configured.")
    separator = "&" if urlsplit(config.search_url).query else "?"
    url = f"{config.search_url}{separator}{urlencode({'q': query, 'format': 'json'})}"
    search_host = urlsplit(config.search_url).hostname or ""
    literal = parse_host_address(search_host)
    allow = Allowlist(
        hosts=frozenset({search_host.lower()}),
        networks=(ipaddress.ip_network(literal),) if literal is not None else (),
    )
    limits = FetchLimits(
        max_bytes=config.limits.max_bytes, timeout_s=config.search_timeout_s, max_redirects=0
    )
    try:
        fetched = fetch(
            url, allowlist=allow, limits=limits, resolver=config.resolver, accept="application/json"
        )
    except FetchError as error:
        raise BrowserError(f"The search service is unavailable: {error}") from error
    if fetched.status != 200:
        raise BrowserError(f"The search service answered HTTP {fetched.status}.")
    try:
        data = json.loads(fetched.body.decode("utf-8", "replace"))
        results = [r for r in data.get("results", []) if isinstance(r, dict) and r.get("url")]
    except (ValueError, AttributeError) as error:
        raise BrowserError("The search service did not answer with SearXNG JSON.") from error
    page = Page(url="", title=f"Search results for {query!r}", lines=[])
    for result in results[:topn]:
        result_url = str(result["url"])
        number = str(len(page.links))
        page.links[number] = result_url
        host = urlsplit(result_url).hostname or result_url
        title = " ".join(str(result.get("title") or host).split())
        page.line_urls[str(len(page.lines))] = result_url
        page.lines.append(f"【{number}†{title}†{host}】")
        for line in _wrap(html.unescape(str(result.get("content") or ""))):
            page.line_urls[str(len(page.lines))] = result_url
            page.lines.append(line)
    if not page.lines:
        page.lines.append("No results.")
    cursor = session.add(page)
    return BrowserOutput(text=_view(cursor, page), sources=[_source(cursor, page)])


def open_page(session: Session, args: dict[str, Any], config: BrowserConfig) -> BrowserOutput:
    target = args.get("id", -1)
    loc = _int_arg(args, "loc", 0)
    num_lines = _int_arg(args, "num_lines", DEFAULT_VIEW_LINES)
    if num_lines <= 0:
        num_lines = DEFAULT_VIEW_LINES
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        url = target
    else:
        link = _int_arg(args, "id", -1)
        cursor, page = session.get(_int_arg(args, "cursor", -1))
        if link < 0:
            return BrowserOutput(text=_view(cursor, page, loc, num_lines), sources=[_source(cursor, page)])
        if str(link) not in page.links:
            raise BrowserError(f"Page {cursor} has no link {link}.")
        url = page.links[str(link)]
    try:
        fetched = fetch(url, allowlist=config.allowlist, limits=config.limits, resolver=config.resolver)
    except FetchError as error:
        raise BrowserError(str(error)) from error
    if fetched.status >= 400:
        raise BrowserError(f"{url} answered HTTP {fetched.status}.")
    kind = fetched.content_type.split(";", 1)[0].strip().lower()
    if kind and not (kind.startswith("text/") or kind in _TEXT_TYPES):
        raise BrowserError(f"{url} is {kind}, which the browser cannot show as text.")
    text = _decode(fetched.body, fetched.content_type)
    if "html" in kind or text.lstrip()[:1] == "<":
        page = page_from_html(fetched.url, text)
    else:
        page = Page(url=fetched.url, title=fetched.url, lines=_wrap(text))
    if fetched.truncated:
        page.lines.append(f"[the page was cut at {config.limits.max_bytes} bytes]")
    cursor = session.add(page)
    return BrowserOutput(text=_view(cursor, page, loc, num_lines), sources=[_source(cursor, page)])


def find(session: Session, args: dict[str, Any], config: BrowserConfig) -> BrowserOutput:
    pattern = args.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise BrowserError("browser.find needs a non-empty 'pattern' string.")
    cursor, page = session.get(_int_arg(args, "cursor", -1))
    needle = pattern.lower()
    found = Page(url=page.url, title=f"Find results for {pattern!r} in {page.title}", lines=[])
    for number, line in enumerate(page.lines):
        if needle in line.lower():
            found.line_urls[str(len(found.lines))] = page.url
            found.lines.append(f"【{number}】 L{number}: {line}")
    if not found.lines:
        found.lines.append(f"No lines of page {cursor} contain {pattern!r}.")
    new_cursor = session.add(found)
    return BrowserOutput(text=_view(new_cursor, found), sources=[_source(new_cursor, found)])


ACTIONS = {"search": search, "open": open_page, "find": find}
