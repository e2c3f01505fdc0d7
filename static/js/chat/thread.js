// The thread: the message views in order, following the stream unless the reader scrolled up, and the
// conversation's title.
import { setDocumentTitle } from "../attention.js";
import { button } from "./dom.js";
import { showHit } from "./hit.js";
import { MessageView } from "./message_view.js";

export class Thread {
  /** *onRefresh({list, inFlight})* runs after every change of the thread (the composer adds its buttons). */
  constructor(main, threadEl, composerEl, onRefresh) {
    this.threadEl = threadEl;
    this.onRefresh = onRefresh;
    this.views = new Map();
    this.emptyState = threadEl.querySelector(".empty-state");
    this.initialised = false;
    this.stickToBottom = true;
    this.lastScrollTop = threadEl.scrollTop;
    this.lastScrollHeight = threadEl.scrollHeight;
    this.scrollQueued = false;
    this.readingHit = false; // a search result's message is shown: nothing new below it yet
    this.jumpButton = button("jump-btn", "↓ New text", "jump", "Scroll to the newest text");
    this.jumpButton.hidden = true;
    main.insertBefore(this.jumpButton, composerEl);
    threadEl.addEventListener("scroll", () => this.scrolled(), { passive: true });
    this.jumpButton.addEventListener("click", () => {
      this.stickToBottom = true;
      this.toBottom();
      this.jumpButton.hidden = true;
    });
  }

  // --- Scrolling: follow the stream unless the reader scrolled up ---------------------------------------

  distanceFromBottom() {
    const t = this.threadEl;
    return t.scrollHeight - t.scrollTop - t.clientHeight;
  }

  scrolled() {
    const t = this.threadEl;
    // Only the reader moving up lets go of the bottom: text arriving between our own scroll and this
    // event must not count as "scrolled away".
    const shrunk = t.scrollHeight < this.lastScrollHeight;
    if (!shrunk && t.scrollTop < this.lastScrollTop - 4) { this.stickToBottom = false; }
    if (this.distanceFromBottom() < 48) { this.stickToBottom = true; }
    if (this.stickToBottom) { this.jumpButton.hidden = true; }
    this.lastScrollTop = t.scrollTop;
    this.lastScrollHeight = t.scrollHeight;
  }

  toBottom() {
    this.threadEl.scrollTop = this.threadEl.scrollHeight;
    this.lastScrollTop = this.threadEl.scrollTop;
  }

  contentGrew() {
    if (this.scrollQueued) { return; }
    this.scrollQueued = true;
    window.requestAnimationFrame(() => {
      this.scrollQueued = false;
      if (this.stickToBottom) { this.toBottom(); }
      else if (this.distanceFromBottom() > 48 && !this.readingHit) { this.jumpButton.hidden = false; }
    });
  }

  // --- The messages ------------------------------------------------------------------------------------

  get(id) { return this.views.get(id); }

  viewsInOrder() {
    const list = [];
    this.threadEl.querySelectorAll(":scope > article.message").forEach((node) => {
      const view = this.views.get(Number(node.getAttribute("data-message-id")));
      if (view) { list.push(view); }
    });
    return list;
  }

  place(view) {
    // A new message continues the branch on screen; a `state` frame puts every message in its place.
    if (view.el.parentNode !== this.threadEl) { this.threadEl.appendChild(view.el); }
  }

  /** Put the articles in the order of *ids* (the branch, first to last), moving only those out of place. */
  order(ids) {
    const article = (node) => {
      let next = node;
      while (next && !(next.tagName === "ARTICLE" && next.classList.contains("message"))) {
        next = next.nextElementSibling;
      }
      return next;
    };
    let here = article(this.threadEl.firstElementChild);
    ids.forEach((id) => {
      const view = this.views.get(id);
      if (!view) { return; }
      if (view.el === here) { here = article(here.nextElementSibling); }
      else { this.threadEl.insertBefore(view.el, here); }
    });
  }

  upsert(m, partial) {
    this.readingHit = false;
    let view = this.views.get(m.id);
    if (view) {
      view.setFull(m, partial);
    } else {
      view = new MessageView(m);
      this.views.set(m.id, view);
      this.place(view);
    }
    return view;
  }

  remove(id) {
    const view = this.views.get(id);
    if (!view) { return null; }
    view.el.remove();
    this.views.delete(id);
    return view;
  }

  /** Show the `state` frame: the branch on screen as stored (messages of other branches leave). */
  renderState(frame) {
    const seen = new Set();
    if (!this.initialised) {
      // The server-rendered articles give way to live ones built from the same stored state.
      this.threadEl.querySelectorAll(":scope > article.message").forEach((node) => node.remove());
    }
    (frame.messages || []).forEach((m) => { seen.add(m.id); this.upsert(m); });
    Array.from(this.views.keys()).forEach((id) => { if (!seen.has(id)) { this.remove(id); } });
    this.order((frame.messages || []).map((m) => m.id));
    if (typeof frame.title === "string") { setTitle(frame.title, false); }
    if (!this.initialised && this.showHit()) {
      // Arrived from a search result: stay at its message.
    } else if (!this.initialised || this.stickToBottom) {
      this.toBottom();
    }
    this.initialised = true;
    this.refresh();
  }

  /** Show the message the address names (a search result), if it is in this thread; return whether it is. */
  showHit() {
    if (!showHit(this.threadEl)) { return false; }
    this.stickToBottom = false;
    this.readingHit = true;
    this.jumpButton.hidden = true;
    this.lastScrollTop = this.threadEl.scrollTop;
    return true;
  }

  refresh() {
    const list = this.viewsInOrder();
    if (this.emptyState) { this.emptyState.hidden = list.length > 0; }
    const inFlight = list.some((v) => v.role === "assistant" && v.inFlight());
    this.onRefresh({ list, inFlight });
    this.contentGrew();
  }
}

/** Show the conversation's *title* (*stored*: it was saved, so the rename field takes it too). */
export function setTitle(title, stored) {
  const shown = title || "New conversation";
  const h1 = document.querySelector("[data-role=title]");
  if (h1) { h1.textContent = shown; }
  const input = document.querySelector(".rename input[name=title]");
  if (stored && input && document.activeElement !== input) { input.value = title; }
  const link = document.querySelector(".conversation-link.active .title");
  if (link) { link.textContent = shown; }
  setDocumentTitle(shown + " · gptoss-web");
}
