// The context meter under the composer: the tokens the branch on screen uses against the model's context,
// and a warning once the next reply will leave the oldest turns out. The server renders the same element
// (chat/templates/chat/_context_meter.html) from the `state` frame's `context`; this keeps it up to date.
import { el } from "./dom.js";
import { CONTEXT_WARNING, contextFull, contextRoom, formatTokens } from "./format.js";
import { TERMINAL } from "./fold.js";

export class ContextMeter {
  /** *composerEl*: the composer form the meter sits in (before its hint). */
  constructor(composerEl) {
    this.composerEl = composerEl;
    this.root = composerEl ? composerEl.querySelector("[data-role=context]") : null;
    this.c = null;
  }

  /** Show the `state` frame's *context* ({used, window, reserve}); a frame without one changes nothing. */
  show(context) {
    if (!context || !this.composerEl) { return; }
    this.c = { used: context.used, window: context.window, reserve: context.reserve };
    this.render();
  }

  /** A reply of the branch on screen ended: the next prompt is its prompt and its answer. */
  answered(m) {
    const s = m.stats || {};
    if (!this.c || !TERMINAL.has(m.status) || !s.prompt_tokens) { return; }
    this.c.used = s.prompt_tokens + (s.answer_tokens || 0);
    this.render();
  }

  build() {
    this.root = el("div", "context-meter");
    this.root.setAttribute("data-role", "context");
    this.bar = el("meter", "context-bar");
    this.bar.setAttribute("data-role", "context-bar");
    this.text = el("span", "context-text");
    this.text.setAttribute("data-role", "context-text");
    this.warning = el("span", "context-warning");
    this.warning.setAttribute("data-role", "context-warning");
    this.warning.setAttribute("role", "status");
    this.root.append(this.bar, this.text, this.warning);
    this.composerEl.insertBefore(this.root, this.composerEl.querySelector(".composer-hint"));
  }

  render() {
    if (!this.root) { this.build(); }
    const c = this.c;
    const bar = this.root.querySelector("[data-role=context-bar]");
    const text = this.root.querySelector("[data-role=context-text]");
    const warning = this.root.querySelector("[data-role=context-warning]");
    const full = contextFull(c);
    this.root.classList.toggle("is-full", full);
    const room = String(contextRoom(c));
    const attrs = { min: "0", max: String(c.window), low: room, high: room, optimum: "0", value: String(c.used) };
    Object.entries(attrs).forEach(([name, value]) => bar.setAttribute(name, value));
    bar.setAttribute("aria-label", "Context used: " + c.used + " of " + c.window + " tokens");
    text.title = "Tokens this conversation uses of the model's context (" + c.reserve + " are kept for each answer)";
    text.textContent = formatTokens(c.used) + " / " + formatTokens(c.window) + " tokens";
    const words = full ? CONTEXT_WARNING : "";
    if (warning.textContent !== words) { warning.textContent = words; }
  }
}
