// Telling the reader that a reply ended while they looked at another tab: a count in the tab's title and,
// if they switched it on, a desktop notification. Both only while the tab is hidden; both go away when the
// tab shows again. The browser asks for permission only when the reader switches notifications on.
//
// Whether they want notifications is their profile's setting (chat.models.Profile), which the server writes
// on <html> as data-notifications; the user menu's switch saves it there. The permission is the browser's own.

const BODY_CHARS = 140;
// Where this browser kept the switch before it became the profile's: removed, the profile decides now.
const LEGACY_STORAGE_KEY = "gptoss:notify";

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

function switchedOn() { return document.documentElement.dataset.notifications === "on"; }

/** Save the profile's setting through the switch's *form*; resolve once the server has stored it. */
async function remember(form, on) {
  const body = new FormData(form); // the CSRF token
  body.delete("notifications");
  if (on) { body.set("notifications", "on"); }
  const response = await fetch(form.action, {
    method: "POST", body, headers: { Accept: "application/json" }, credentials: "same-origin",
  });
  if (!response.ok) { throw new Error("HTTP " + response.status); }
  document.documentElement.dataset.notifications = on ? "on" : "off";
}

function forgetLegacySwitch() {
  try { window.localStorage.removeItem(LEGACY_STORAGE_KEY); } catch { /* storage disabled: nothing kept */ }
}

/** Ask the browser for permission when it has not been asked yet; resolve with its answer. */
function permission() {
  if (window.Notification.permission !== "default") { return Promise.resolve(window.Notification.permission); }
  return window.Notification.requestPermission().catch(() => "denied");
}

const BLOCKED = "This browser blocks notifications from this site: allow them in its site settings.";

function noteSayer(note) {
  return (text) => {
    if (!note) { return; }
    note.textContent = text;
    note.hidden = !text;
  };
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

/** Wire the notification switch (a checkbox in a form, hidden where the browser has no notifications) under
 * *root*: it shows and saves the profile's setting. */
export function wireNotifySwitch(root) {
  forgetLegacySwitch();
  const box = root.querySelector("[data-role=notify-switch]");
  if (!box || !supported()) { return; }
  const form = box.closest("form");
  const say = noteSayer(root.querySelector("[data-role=notify-note]"));
  form.hidden = false;
  form.addEventListener("submit", (event) => event.preventDefault());
  box.checked = notifying();
  const store = (on) => {
    remember(form, on).catch(() => {
      box.checked = !on;
      say("Not saved: the server did not answer. Try again.");
    });
  };
  box.addEventListener("change", () => {
    say("");
    if (!box.checked) { store(false); return; }
    permission().then((answer) => {
      box.checked = answer === "granted";
      if (box.checked) { store(true); } else { say(BLOCKED); }
    });
  });
}

/** On the profile page, ticking "Notify me" asks this browser for permission (the form saves the setting). */
export function wireProfileNotifications(root) {
  const box = root.querySelector("[data-role=profile-form] input[name=notifications]");
  if (!box) { return; }
  const say = noteSayer(box.closest("form").querySelector("[data-role=notify-note]"));
  if (!supported()) {
    say("This browser cannot show notifications; the setting applies in browsers that can.");
    return;
  }
  box.addEventListener("change", () => {
    say("");
    if (!box.checked) { return; }
    permission().then((answer) => {
      if (answer !== "granted") { say(BLOCKED + " The setting still applies in your other browsers."); }
    });
  });
}
