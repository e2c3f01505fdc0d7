// A search result links to a message as /c/<conversation>/#message-<id>: the thread then shows that message,
// marked, instead of the newest text.

function hitId() {
  const match = /^#message-(\d+)$/.exec(window.location.hash);
  return match ? Number(match[1]) : null;
}

/** Scroll *threadEl* to the message the address names and mark it; return whether there was one. */
export function showHit(threadEl) {
  const id = hitId();
  const node = id === null ? null : document.getElementById(`message-${id}`);
  if (!node || node.parentNode !== threadEl) { return false; }
  threadEl.querySelectorAll(":scope > .message.is-hit").forEach((other) => other.classList.remove("is-hit"));
  node.classList.add("is-hit");
  node.scrollIntoView({ block: "center" });
  return true;
}
