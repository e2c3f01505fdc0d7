// Telling the reader that a reply ended while they looked at another tab: a count in the tab's title and,
// if they switched it on, a desktop notification. Both only while the tab is hidden; both go away when the
// tab shows again. The browser asks for permission only when the reader switches notifications on.

const STORAGE_KEY = "gptoss:notify";
const BODY_CHARS = 140;

let baseTitle = document.title;
let unseen = 0;
const told = new Set();
const shown = [];

function showTitle() {
  document.title = unseen ? "(" + unseen + ") " + baseTitle : baseTitle;
}

/** Set the page's title; a count of unseen replies stays in front of it. */
export function setDocumentTitle(title) {
  baseTitle = title;
  showTitle();
}

function supported() { return "Notification" in window; }

function switchedOn() {
  try { return window.localStorage.getItem(STORAGE_KEY) === "on"; } catch { return false; }
}

function remember(on) {
  try {
    if (on) { window.localStorage.setItem(STORAGE_KEY, "on"); } else { window.localStorage.removeItem(STORAGE_KEY); }
  } catch { /* storage disabled: the switch holds for this page only */ }
}

function notifying() { return supported() && switchedOn() && window.Notification.permission === "granted"; }

function bodyOf(m) {
  if (m.status === "failed") { return "The reply failed" + (m.error ? ": " + m.error : "."); }
  if (m.status === "interrupted") { return "The reply was cut off. Retry it from the conversation."; }
  const text = (m.content || "").replace(/\s+/g, " ").trim();
  return text.length > BODY_CHARS ? text.slice(0, BODY_CHARS - 1) + "…" : text || "The answer is ready.";
}

/** The reply *m* (a stored message) ended in the conversation *title*: tell a reader who looks elsewhere. */
export function replyEnded(m, title) {
  if (document.visibilityState !== "hidden" || m.role !== "assistant" || m.status === "cancelled") { return; }
  if (told.has(m.id)) { return; } // the `done` of a reply may arrive twice (docs/protocol.md)
  told.add(m.id);
  unseen += 1;
  showTitle();
  if (!notifying()) { return; }
  const note = new window.Notification(title || "gptoss-web", { body: bodyOf(m), tag: "gptoss-reply-" + m.id });
  note.addEventListener("click", () => {
    window.focus();
    note.close();
  });
  shown.push(note);
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") { return; }
  unseen = 0;
  showTitle();
  shown.splice(0).forEach((note) => note.close());
});

/** Wire the notification switch (a checkbox, hidden where the browser has no notifications) under *root*. */
export function wireNotifySwitch(root) {
  const box = root.querySelector("[data-role=notify-switch]");
  if (!box || !supported()) { return; }
  const label = box.closest("label");
  const note = root.querySelector("[data-role=notify-note]");
  const say = (text) => {
    if (!note) { return; }
    note.textContent = text;
    note.hidden = !text;
  };
  label.hidden = false;
  box.checked = notifying();
  box.addEventListener("change", () => {
    say("");
    if (!box.checked) { remember(false); return; }
    const settle = (permission) => {
      box.checked = permission === "granted";
      remember(box.checked);
      if (!box.checked) { say("This browser blocks notifications from this site: allow them in its site settings."); }
    };
    if (window.Notification.permission === "default") {
      window.Notification.requestPermission().then(settle, () => settle("denied"));
    } else {
      settle(window.Notification.permission);
    }
  });
}
