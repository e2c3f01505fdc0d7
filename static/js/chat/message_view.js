// One message of the thread: its element, built from the stored message (the payload of
// chat.events.message_payload) and kept up to date by stream events. The server renders the same element
// from the same payload in chat/templates/chat/_message.html: the two must stay identical
// (tests/browser/test_rendering.py compares them for every status).
import { addCopyButtons, copyText } from "../copy.js";
import { button, el } from "./dom.js";
import { foldEvent, IN_FLIGHT, takeStored, TERMINAL } from "./fold.js";
import { formatMs, ordinal, TOOL_STATE_LABEL, toolState } from "./format.js";

export class MessageView {
  constructor(m) {
    this.id = m.id;
    this.role = m.role;
    this.m = { content: "", reasoning: "", tool_calls: [], seq: 0 };
    this.el = el("article", "message message-" + m.role);
    this.el.id = "message-" + m.id;
    this.el.setAttribute("data-message-id", m.id);
    this.autoOpenedReasoning = false;
    this.userToggledReasoning = false;
    this.streamText = null;
    this.typing = null;
    if (m.role === "assistant") { this.buildAssistant(); } else { this.buildUser(); }
    // Copies the message as it was written and stored: its Markdown, not the rendered page.
    const what = m.role === "assistant" ? "answer" : "question";
    this.copyButton = button("btn btn-tiny", "Copy", "copy-message", "Copy this " + what + " as Markdown");
    this.copyButton.setAttribute("aria-label", "Copy " + what);
    this.copyButton.addEventListener("click", () => copyText(this.m.content, this.copyButton));
    this.setFull(m);
  }

  buildUser() {
    this.contentEl = el("div", "bubble markdown");
    this.contentEl.setAttribute("data-role", "content");
    this.actionsEl = el("div", "message-actions");
    this.el.append(this.contentEl, this.actionsEl);
  }

  /**
   * The versions of this message, "‹ 2 / 3 ›" (chat/templates/chat/_branch_nav.html), or null when it has
   * none. A button asks for its sibling with a `branch-switch` event (chat/main.js sends the `switch`).
   */
  branchNav() {
    const b = this.m.branch;
    if (!b || b.count < 2) { return null; }
    const nav = el("div", "branch-nav");
    nav.setAttribute("data-role", "branch");
    nav.setAttribute("role", "group");
    nav.setAttribute("aria-label", "Version " + b.index + " of " + b.count);
    const arrow = (label, target, role, name) => {
      const x = el("button", "btn btn-tiny branch-btn", label);
      x.type = "submit";
      x.setAttribute("form", "branch-form");
      x.name = "message";
      x.value = target === null || target === undefined ? "" : String(target);
      x.setAttribute("data-role", role);
      x.setAttribute("aria-label", name);
      if (!x.value) { x.disabled = true; }
      x.addEventListener("click", (event) => {
        event.preventDefault();
        if (x.disabled) { return; }
        const detail = { message: Number(x.value), role };
        this.el.dispatchEvent(new CustomEvent("branch-switch", { bubbles: true, detail }));
      });
      return x;
    };
    const count = el("span", "branch-count", b.index + " / " + b.count);
    count.setAttribute("aria-hidden", "true");
    nav.append(arrow("‹", b.previous, "branch-previous", "Previous version"), count,
      arrow("›", b.next, "branch-next", "Next version"));
    return nav;
  }

  renderBranch() {
    if (this.branchEl) { this.branchEl.remove(); }
    this.branchEl = this.branchNav();
    if (this.branchEl) { this.el.insertBefore(this.branchEl, this.actionsEl); }
  }

  buildAssistant() {
    this.reasoningEl = el("details", "reasoning");
    this.reasoningEl.setAttribute("data-role", "reasoning");
    this.reasoningSummary = el("summary", null, "Reasoning");
    this.reasoningBody = el("div", "reasoning-body");
    this.reasoningBody.setAttribute("data-role", "reasoning-body");
    this.reasoningText = document.createTextNode("");
    this.reasoningBody.appendChild(this.reasoningText);
    this.reasoningEl.append(this.reasoningSummary, this.reasoningBody);
    this.reasoningEl.hidden = true;
    this.reasoningSummary.addEventListener("click", () => {
      this.userToggledReasoning = true;
      this.autoOpenedReasoning = false;
    });
    this.toolsEl = el("div", "tool-calls");
    this.toolsEl.setAttribute("data-role", "tools");
    this.contentEl = el("div", "bubble markdown");
    this.contentEl.setAttribute("data-role", "content");
    this.noticeEl = el("p", "notice");
    this.noticeEl.setAttribute("data-role", "notice");
    this.noticeEl.hidden = true;
    this.metaEl = el("footer", "message-meta");
    this.metaEl.setAttribute("data-role", "meta");
    this.el.append(this.reasoningEl, this.toolsEl, this.contentEl, this.noticeEl, this.metaEl);
  }

  inFlight() { return IN_FLIGHT.has(this.m.status); }

  /** Whether there is text to copy: a question, or a reply that has ended with some answer text. */
  copyable() { return !!this.m.content && (this.role !== "assistant" || TERMINAL.has(this.m.status)); }

  /** Take the stored message (see fold.takeStored for what a *partial* `message` frame keeps). */
  setFull(m, partial) {
    const taken = takeStored(this.m, m, partial);
    this.m = taken.message;
    this.staleHtml = taken.staleHtml;
    this.renderStatus();
    if (this.role === "assistant") {
      this.renderReasoning();
      this.renderTools();
      this.renderContent(true);
      this.renderNotice();
      this.renderMeta();
    } else {
      this.renderContent(true);
      this.renderBranch();
    }
  }

  renderStatus() {
    const status = this.m.status;
    this.el.setAttribute("data-status", status);
    this.el.setAttribute("aria-busy", IN_FLIGHT.has(status) ? "true" : "false");
    this.el.className = "message message-" + this.role + " status-" + status;
  }

  renderContent(full) {
    const m = this.m;
    const streaming = this.role === "assistant" && IN_FLIGHT.has(m.status);
    if (!streaming && typeof m.html === "string" && !this.staleHtml) {
      if (full || this.streamText) {
        // The server's sanitized rendering: the one source of truth for how a finished message looks.
        this.contentEl.innerHTML = m.html;
        this.streamText = null;
        this.typing = null;
        addCopyButtons(this.contentEl);
      }
      this.contentEl.classList.remove("is-empty");
      return;
    }
    if (!this.streamText || full) {
      this.contentEl.textContent = "";
      const holder = el("div", "stream-text");
      holder.setAttribute("data-role", "stream-text");
      this.streamText = document.createTextNode(m.content);
      holder.appendChild(this.streamText);
      this.contentEl.appendChild(holder);
      this.typing = el("span", "typing");
      this.typing.setAttribute("aria-hidden", "true");
      this.typing.append(el("i"), el("i"), el("i"));
      this.contentEl.appendChild(this.typing);
    } else if (this.streamText.data !== m.content) {
      this.streamText.data = m.content;
    }
    if (this.typing) { this.typing.hidden = !(streaming && !m.content && !m.reasoning); }
    this.contentEl.classList.toggle("is-empty", !m.content);
  }

  renderReasoning() {
    const m = this.m;
    const has = !!m.reasoning;
    this.reasoningEl.hidden = !has;
    if (this.reasoningText.data !== m.reasoning) { this.reasoningText.data = m.reasoning; }
    const live = m.status === "streaming" && !m.content;
    this.reasoningEl.classList.toggle("live", has && live);
    this.reasoningSummary.textContent = has && live ? "Reasoning…" : "Reasoning";
    if (this.userToggledReasoning) { return; }
    if (has && live && !this.reasoningEl.open) {
      // Reasoning streams in the open while no answer text exists yet.
      this.reasoningEl.open = true;
      this.autoOpenedReasoning = true;
    }
    if (m.content && this.autoOpenedReasoning) {
      // The answer has started: fold the reasoning away again.
      this.reasoningEl.open = false;
      this.autoOpenedReasoning = false;
    }
  }

  renderTools() {
    const calls = this.m.tool_calls;
    while (this.toolsEl.children.length > calls.length) { this.toolsEl.lastChild.remove(); }
    for (let i = 0; i < calls.length; i++) {
      let card = this.toolsEl.children[i];
      if (!card) {
        card = el("details", "tool-card");
        card.setAttribute("data-role", "tool");
        const summary = el("summary");
        summary.append(el("span", "tool-icon", "⚙"), el("span", "tool-name"), el("span", "tool-state"));
        card.append(summary, el("div", "tool-body"));
        this.toolsEl.appendChild(card);
      }
      fillTool(card, calls[i] || {});
    }
  }

  renderNotice() {
    this.noticeEl.hidden = !this.m.notice;
    this.noticeEl.textContent = this.m.notice || "";
  }

  renderMeta() {
    const m = this.m;
    const meta = this.metaEl;
    meta.textContent = "";
    this.branchEl = this.branchNav();
    if (this.branchEl) { meta.appendChild(this.branchEl); }
    let badge = null;
    if (m.status === "queued") {
      badge = el("span", "badge badge-live", m.queue_position ? ordinal(m.queue_position) + " in queue" : "Queued");
      badge.setAttribute("data-role", "queue");
    } else if (m.status === "streaming") {
      badge = el("span", "badge badge-live", "Answering…");
    } else if (m.status === "cancelled") {
      badge = el("span", "badge", "Stopped");
    } else if (m.status === "failed") {
      badge = el("span", "badge badge-error", "Failed");
    } else if (m.status === "interrupted") {
      badge = el("span", "badge badge-error", "Interrupted");
    }
    if (badge) {
      badge.setAttribute("data-role", badge.getAttribute("data-role") || "status");
      meta.appendChild(badge);
    }
    if (m.status === "queued" && m.waiting) {
      // e.g. no GPU worker serves its model right now: the reply keeps its place, and the reader knows why.
      const note = el("span", "waiting-note", m.waiting);
      note.setAttribute("data-role", "waiting");
      meta.appendChild(note);
    }
    if (m.status === "failed" && m.error) { meta.appendChild(el("span", "error-text", m.error)); }
    if (m.status === "interrupted") {
      meta.appendChild(el("span", "muted", m.error || "The reply was cut off. Press Retry to try again."));
    }
    const s = m.stats || {};
    if (TERMINAL.has(m.status) && s.ttft_ms !== null && s.ttft_ms !== undefined) {
      const stats = el("span", "stats");
      stats.setAttribute("data-role", "stats");
      const add = (text, title) => {
        const x = el("span", "stat", text);
        x.title = title;
        stats.appendChild(x);
      };
      add("queue " + formatMs(s.queue_wait_ms || 0), "Time waiting in the queue");
      add("first token " + formatMs(s.ttft_ms), "Time to first token");
      if (s.tokens_per_second) { add(s.tokens_per_second.toFixed(1) + " tok/s", "Tokens per second"); }
      add((s.prompt_tokens || 0) + " · " + (s.reasoning_tokens || 0) + " · " + (s.answer_tokens || 0) + " tokens",
        "Prompt · reasoning · answer tokens");
      if (m.reasoning_effort) { add("effort " + m.reasoning_effort, "Reasoning effort"); }
      meta.appendChild(stats);
    }
    this.actionsEl = el("span", "message-actions");
    meta.appendChild(this.actionsEl);
  }

  /** Apply one stream event; return false when a gap means the state must be reloaded. */
  applyStream(ev) {
    const wasQueued = this.m.status === "queued";
    const result = foldEvent(this.m, ev);
    if (result === "gap") { return false; }
    if (result === "ignored") { return true; }
    this.el.setAttribute("data-seq", ev.seq);
    if (wasQueued) { this.setStatusOnly(); }
    if (ev.type === "delta") {
      this.renderReasoning();
      this.renderContent(false);
    } else if (ev.type === "tool") {
      this.renderTools();
    } else if (ev.type === "notice") {
      this.renderNotice();
    }
    return true;
  }

  setStatusOnly() {
    this.renderStatus();
    this.renderMeta();
    this.renderContent(false);
  }
}

function fillTool(card, call) {
  const state = toolState(call);
  card.classList.toggle("running", state === "running");
  card.classList.toggle("failed", state === "failed");
  card.querySelector(".tool-name").textContent = call.recipient || "tool";
  card.querySelector(".tool-state").textContent = TOOL_STATE_LABEL[state];
  const body = card.querySelector(".tool-body");
  body.textContent = "";
  body.append(el("div", "tool-label", "Arguments"), el("pre", "tool-pre", call.arguments || ""));
  if (state !== "running") { body.append(el("div", "tool-label", "Result"), el("pre", "tool-pre", String(call.result))); }
  if (typeof call.error === "string" && call.error) {
    body.append(el("div", "tool-label", "Error"), el("pre", "tool-pre", call.error));
  }
}
