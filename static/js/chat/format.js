// How a message's facts read, in one place on the browser's side. chat/templatetags/chat_tags.py is the
// server's side of the same definitions: the page and the live view show the same words.

/** "1st", "2nd", "3rd", "11th" … */
export function ordinal(n) {
  const mod100 = n % 100;
  let suffix = "th";
  if (mod100 < 11 || mod100 > 13) { suffix = { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th"; }
  return n + suffix;
}

/** A duration: "850 ms" below ten seconds, "12.0 s" from there. */
export function formatMs(ms) {
  return ms >= 10000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms) + " ms";
}

/** The state of a tool call: "running" (no result yet), "failed" (an error result) or "done". */
export function toolState(call) {
  const done = call.result !== undefined && call.result !== null;
  if (!done) { return "running"; }
  return call.error === true || /^Error:/.test(String(call.result)) ? "failed" : "done";
}

export const TOOL_STATE_LABEL = { running: "running…", failed: "error", done: "done" };

/** A token count in few characters: "950", "3.2k", "131k". */
export function formatTokens(n) {
  if (n < 1000) { return String(n); }
  return (n / 1000).toFixed(n < 10000 ? 1 : 0).replace(/\.0$/, "") + "k";
}

/** The tokens a conversation's turns may use before the oldest are left out: the context less the answer's. */
export function contextRoom(c) { return Math.max(0, c.window - c.reserve); }

/** Whether the next reply will leave the oldest turns out of its prompt. */
export function contextFull(c) { return c.used > contextRoom(c); }

export const CONTEXT_WARNING = "Older turns will be left out of the next reply: they no longer fit the model's context.";
