// The search palette: Ctrl+K (⌘K on a Mac) on every page of the app, or the sidebar's Search link, opens it.
// Results come as you type (debounced, a newer query cancels an older one), ↑/↓ choose one, Enter opens it
// and Esc closes the palette. Without a chosen result, Enter opens the search page (/search/?q=), which is
// also where the Search link leads without JavaScript.
//
// The server sends each title and snippet as [text, marked] parts: they become text nodes and <mark>
// elements here, never HTML.
import { el } from "./chat/dom.js";

const DEBOUNCE_MS = 150;

function partsInto(node, parts) {
  (parts || []).forEach(([text, marked]) => {
    node.appendChild(marked ? el("mark", null, text) : document.createTextNode(text));
  });
  return node;
}

function whereLabel(hit) {
  if (hit.message === null) { return "Title"; }
  if (hit.in_reasoning) { return "Reasoning"; }
  return hit.role === "user" ? "You" : "Assistant";
}

class Palette {
  constructor(searchUrl, hitsUrl, offerReasoning) {
    this.hitsUrl = hitsUrl;
    this.hits = [];
    this.shownFor = "";
    this.active = -1;
    this.timer = null;
    this.pending = null;
    this.asked = 0;

    this.dialog = el("dialog", "palette");
    this.dialog.setAttribute("aria-label", "Search conversations");
    this.form = el("form", "palette-form");
    this.form.method = "get";
    this.form.action = searchUrl;
    this.form.setAttribute("role", "search");
    this.input = el("input", "palette-input");
    Object.assign(this.input, { type: "search", name: "q", placeholder: "Search your conversations", autocomplete: "off" });
    this.input.setAttribute("aria-label", "Search your conversations");
    this.input.setAttribute("role", "combobox");
    this.input.setAttribute("aria-controls", "palette-results");
    this.input.setAttribute("aria-expanded", "false");
    this.input.setAttribute("aria-autocomplete", "list");
    const toggle = el("label", "toggle small palette-toggle");
    this.reasoning = el("input");
    Object.assign(this.reasoning, { type: "checkbox", name: "reasoning" });
    toggle.append(this.reasoning, el("span", null, "Include reasoning"));
    this.form.append(this.input);
    if (offerReasoning) { this.form.append(toggle); } // not to a user whose group hides reasoning
    this.list = el("ul", "palette-results");
    this.list.id = "palette-results";
    this.list.setAttribute("role", "listbox");
    this.status = el("p", "palette-status muted small");
    this.status.setAttribute("role", "status");
    const foot = el("p", "palette-foot muted small", "↑↓ choose · Enter open · Esc close");
    this.dialog.append(this.form, this.status, this.list, foot);
    document.body.appendChild(this.dialog);

    this.input.addEventListener("input", () => this.schedule());
    this.reasoning.addEventListener("change", () => { this.input.focus(); this.schedule(); });
    this.input.addEventListener("keydown", (event) => this.key(event));
    // Escape belongs to the palette (the dialog closes itself): the page's own Escape (closing the phone menu)
    // must not see it, or prevent the dialog from closing.
    this.dialog.addEventListener("keydown", (event) => { if (event.key === "Escape") { event.stopPropagation(); } });
    this.form.addEventListener("submit", (event) => {
      // A chosen result opens, unless it was chosen for words since changed (their results are on the way).
      if (this.active >= 0 && this.shownFor === this.input.value.trim()) {
        event.preventDefault();
        this.openHit(this.active);
      }
    });
    // A click on the backdrop (outside the panel) closes it, as Esc does.
    this.dialog.addEventListener("click", (event) => { if (event.target === this.dialog) { this.dialog.close(); } });
  }

  open() {
    if (!this.dialog.open) { this.dialog.showModal(); }
    this.input.focus();
    this.input.select();
  }

  schedule() {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.fetchHits(), DEBOUNCE_MS);
  }

  async fetchHits() {
    const q = this.input.value.trim();
    if (this.pending) { this.pending.abort(); }
    if (!q) { this.show([], ""); return; }
    const asked = ++this.asked;
    this.pending = new AbortController();
    const params = new URLSearchParams({ q });
    if (this.reasoning.checked) { params.set("reasoning", "on"); }
    try {
      const response = await fetch(`${this.hitsUrl}?${params}`, {
        signal: this.pending.signal, headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      if (!response.ok) { throw new Error(String(response.status)); }
      const data = await response.json();
      if (asked === this.asked) { this.show(data.hits, q); }
    } catch (error) {
      if (error.name !== "AbortError" && asked === this.asked) {
        this.show([], q, "Search failed. Try again, or press Enter for the search page.");
      }
    }
  }

  show(hits, q, problem) {
    this.hits = hits;
    this.shownFor = q;
    this.list.replaceChildren();
    hits.forEach((hit, i) => {
      const item = el("li", "palette-hit");
      item.id = `palette-hit-${i}`;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", "false");
      const link = el("a", "search-hit");
      link.href = hit.url;
      link.tabIndex = -1;
      const head = el("span", "hit-head");
      head.append(partsInto(el("span", "hit-title"), hit.title));
      if (hit.archived) { head.append(document.createTextNode(" "), el("span", "row-tag", "Archived")); }
      head.append(el("time", null, hit.when));
      const snippet = el("span", "hit-snippet");
      snippet.append(el("span", "hit-role", whereLabel(hit)), document.createTextNode(" "));
      partsInto(snippet, hit.snippet);
      link.append(head, snippet);
      item.appendChild(link);
      item.addEventListener("mousemove", () => this.select(i, false));
      this.list.appendChild(item);
    });
    this.input.setAttribute("aria-expanded", hits.length ? "true" : "false");
    if (problem) { this.status.textContent = problem; }
    else if (q && !hits.length) { this.status.textContent = `Nothing matches “${q}”.`; }
    else { this.status.textContent = ""; }
    this.status.hidden = !this.status.textContent;
    this.select(hits.length ? 0 : -1, false);
  }

  select(i, scroll) {
    this.active = i;
    this.list.querySelectorAll("[role=option]").forEach((item, n) => {
      item.setAttribute("aria-selected", n === i ? "true" : "false");
    });
    if (i < 0) { this.input.removeAttribute("aria-activedescendant"); return; }
    this.input.setAttribute("aria-activedescendant", `palette-hit-${i}`);
    if (scroll) { this.list.children[i].scrollIntoView({ block: "nearest" }); }
  }

  key(event) {
    const n = this.hits.length;
    if (event.key === "ArrowDown" && n) {
      event.preventDefault();
      this.select((this.active + 1) % n, true);
    } else if (event.key === "ArrowUp" && n) {
      event.preventDefault();
      this.select((this.active - 1 + n) % n, true);
    }
  }

  openHit(i) {
    const url = new URL(this.hits[i].url, window.location.href);
    this.dialog.close();
    // The same conversation: only the fragment changes, and the page shows the message (see hit.js).
    window.location.assign(url.href);
  }
}

/** Give this page the search palette, if it is a page of the app (it has the sidebar's Search link). */
export function startSearchPalette() {
  const opener = document.querySelector("[data-open-search]");
  if (!opener || typeof HTMLDialogElement !== "function") { return; }
  let palette = null;
  const open = () => {
    if (!palette) {
      const offerReasoning = !opener.hasAttribute("data-no-reasoning");
      palette = new Palette(opener.getAttribute("href"), opener.getAttribute("data-hits-url"), offerReasoning);
    }
    palette.open();
  };
  opener.addEventListener("click", (event) => { event.preventDefault(); open(); });
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && event.key.toLowerCase() === "k") {
      event.preventDefault();
      open();
    }
  });
}
