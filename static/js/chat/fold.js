// The stream-event fold (docs/protocol.md), the browser's copy of chat.events.apply_stream_event: stream
// events are applied in `seq` order, older ones ignored, a gap reported so that the state is reloaded.

export const IN_FLIGHT = new Set(["queued", "streaming"]);
export const TERMINAL = new Set(["done", "cancelled", "failed", "interrupted"]);

/**
 * Return the message to keep after the stored message *m* arrives over *old*, and whether its `html` is
 * older than its text. `state` and `done` frames replace everything; a `message` frame (*partial*) may lag
 * behind the deltas already shown (Stop before the worker's last write): then only its status is taken.
 */
export function takeStored(old, m, partial) {
  const next = { ...m };
  let staleHtml = false;
  if (partial && typeof m.seq === "number" && m.seq < old.seq) {
    next.content = old.content;
    next.reasoning = old.reasoning;
    next.tool_calls = old.tool_calls;
    next.seq = old.seq;
    staleHtml = true;
  }
  // Only a `state` frame says where a message stands among its versions; other frames keep what it said.
  if (next.branch === undefined && old.branch) { next.branch = old.branch; }
  next.seq = typeof next.seq === "number" ? next.seq : 0;
  next.content = next.content || "";
  next.reasoning = next.reasoning || "";
  next.tool_calls = (next.tool_calls || []).slice();
  return { message: next, staleHtml };
}

/** Fold the stream event *ev* into the message *m*: return "applied", "ignored" (old) or "gap". */
export function foldEvent(m, ev) {
  if (typeof ev.seq !== "number" || ev.seq <= m.seq || TERMINAL.has(m.status)) { return "ignored"; }
  if (ev.seq !== m.seq + 1) { return "gap"; }
  m.seq = ev.seq;
  if (m.status === "queued") {
    m.status = "streaming";
    m.queue_position = null;
    m.waiting = "";
  }
  if (ev.type === "delta") {
    if (ev.reasoning) { m.reasoning += ev.reasoning; }
    if (ev.content) { m.content += ev.content; }
  } else if (ev.type === "tool") {
    m.tool_calls[ev.index] = ev.call;
  } else if (ev.type === "notice") {
    m.notice = ev.notice;
  }
  return "applied";
}
