// The live conversation: one WebSocket per conversation page (docs/protocol.md).
//
// Postgres is the truth: every (re)connect starts from the server's `state` frame, and the stream events
// after it are applied in `seq` order (older ones dropped, a gap answered with `sync`). Model and user text
// is only ever set with textContent; the one innerHTML is the server's sanitized `html` of a message.
import { replyEnded } from "../attention.js";
import { sidebarChanged } from "../sidebar.js";
import { Composer } from "./composer.js";
import { ContextMeter } from "./context_meter.js";
import { TERMINAL } from "./fold.js";
import { Socket } from "./socket.js";
import { setTitle, Thread } from "./thread.js";

const STALE_SYNC_MS = 2000;
// The longest the new conversation's top bar and sidebar row wait for its first answer text (see holdBack).
const HOLD_BACK_MS = 3000;

/** Start the live conversation of this page, if it is a conversation page. */
export function startChat() {
  const main = document.querySelector("main[data-ws-url]");
  if (!main || !window.WebSocket) { return; }
  const threadEl = document.getElementById("thread");
  const composerEl = document.querySelector("[data-role=composer]");

  let composer = null;
  const thread = new Thread(main, threadEl, composerEl, (shown) => composer.decorate(shown));
  const socket = new Socket(main.getAttribute("data-ws-url"), {
    frame: handle,
    connected: () => composer.update(),
    closed,
  });
  composer = new Composer(main, composerEl, socket, thread);
  const meter = new ContextMeter(composerEl);
  // Fetches that can wait for the answer (holdBack): run at its first text or end.
  let heldBack = null;
  // The arrow a keyboard user pressed to see another version: it keeps the focus on the new version.
  let switchFocus = null;
  threadEl.addEventListener("branch-switch", (event) => {
    switchFocus = event.detail;
    composer.switchTo(event.detail.message);
  });

  function closed(code) {
    composer.disconnected();
    if (code === 4401) {
      // The session ended (signed out, password changed, account deactivated). Loading the page again
      // leads to the sign-in page, and back here after it; the draft waits in sessionStorage meanwhile.
      // (A browser whose own session was rotated by a password change just gets the page again.)
      composer.saveDraft();
      composer.update("Your session has ended. Taking you to the sign-in page…");
      window.location.assign(window.location.pathname);
      return;
    }
    if (code === 4404) {
      // The conversation is gone (deleted in another tab): nothing to reconnect to.
      composer.update("This conversation no longer exists.");
      thread.refresh();
      return;
    }
    composer.update("Reconnecting…");
    thread.refresh();
  }

  function handle(frame) {
    switch (frame.type) {
      case "state":
        thread.renderState(frame);
        meter.show(frame.context);
        refocus();
        break;
      case "message":
        if (frame.message) {
          thread.upsert(frame.message, true);
          thread.refresh();
          resyncIfStale(frame.message.id);
        }
        break;
      case "done":
        releaseHeld();
        if (frame.message) {
          thread.upsert(frame.message);
          thread.refresh();
          meter.answered(frame.message);
          const title = document.querySelector("[data-role=title]");
          replyEnded(frame.message, title ? title.textContent : "");
        }
        break;
      case "queued":
      case "started":
        statusChange(frame);
        break;
      case "delta":
      case "tool":
      case "notice":
        stream(frame);
        releaseHeld();
        break;
      case "title":
        setTitle(frame.title || "", true);
        break;
      case "created":
        moveTo(frame);
        break;
      case "sidebar":
        holdBack(() => sidebarChanged(frame));
        break;
      case "ack":
        composer.ack(frame);
        break;
      case "error":
        composer.failed(frame);
        releaseHeld();
        break;
      default:
        break;
    }
  }

  // After a switch, the version shown now has the focus on the same arrow (or the other one, at an end).
  function refocus() {
    if (!switchFocus) { return; }
    const view = thread.get(switchFocus.message);
    if (!view) { return; } // not shown yet: this was an earlier state
    const { role } = switchFocus;
    switchFocus = null;
    const other = role === "branch-next" ? "branch-previous" : "branch-next";
    const target = [role, other].map((r) => view.el.querySelector("[data-role=" + r + "]"))
      .find((b) => b && !b.disabled);
    if (target) { target.focus(); }
  }

  // A `message` frame that ends a reply may carry older text than the page shows (Stop is stored before the
  // worker's last write); the worker's `done` then brings the final text. Its `done` may also have come first
  // (two processes send them), and then none follows: if the reply still shows text newer than its stored
  // rendering after STALE_SYNC_MS, the state is reloaded from the server, which holds the final text.
  function resyncIfStale(id) {
    window.setTimeout(() => {
      const view = thread.get(id);
      if (view && view.staleHtml && TERMINAL.has(view.m.status)) { socket.sync(); }
    }, STALE_SYNC_MS);
  }

  // The start page's first message started a conversation (in one action, over this socket): the page
  // becomes that conversation's page without loading anything, and the socket now follows it.
  function moveTo(frame) {
    const wsUrl = "/ws/conversations/" + frame.conversation + "/";
    main.setAttribute("data-conversation-id", String(frame.conversation));
    main.setAttribute("data-ws-url", wsUrl);
    socket.path = wsUrl;
    composer.moved(frame.conversation, frame.url);
    heldBack = [];
    window.setTimeout(releaseHeld, HOLD_BACK_MS);
    // The address too: a same-document navigation costs the browser about as much as rendering the thread
    // (it reloads the page's icon), so it waits for the first answer text like the fetches below.
    holdBack(() => window.history.replaceState(null, "", frame.url));
    // Its sidebar row comes with the server's `sidebar` frame, which every socket of the user gets (this one
    // after `created`: a socket handles one frame at a time), so it is held back too and marks the row as
    // this page's.
    holdBack(() => refreshTopbar(frame.conversation));
  }

  // While the first reply of a conversation just started here is on its way to its first text, the page's
  // own work that can wait (its address, the top bar, sidebar rows) waits: on a busy server it would compete
  // with that reply for the CPU. It runs at the reply's first text, its end, an error, or after HOLD_BACK_MS,
  // whichever comes first, in a task of its own, after the one that shows that text.
  function holdBack(later) {
    if (heldBack) { heldBack.push(later); } else { later(); }
  }

  function releaseHeld() {
    const held = heldBack;
    heldBack = null;
    if (held) { window.setTimeout(() => held.forEach((later) => later()), 0); }
  }

  // The start page has no conversation top bar (title, rename, settings, delete): it comes from the server,
  // fetched alone, while the answer already streams. The menu button stays.
  async function refreshTopbar(id) {
    const base = main.getAttribute("data-topbar-url");
    if (!base) { return; }
    try {
      const response = await fetch(base.replace("/0/", `/${id}/`), { credentials: "same-origin" });
      if (!response.ok) { return; }
      const bar = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = bar.querySelector("header.topbar");
      const old = document.querySelector("header.topbar");
      if (!fresh || !old) { return; }
      old.querySelectorAll(":scope > :not([data-toggle-sidebar])").forEach((node) => node.remove());
      fresh.querySelectorAll(":scope > :not([data-toggle-sidebar])").forEach((node) => {
        old.append(document.adoptNode(node));
      });
    } catch {
      // Offline for a moment: the conversation works on; its next load shows the top bar.
    }
  }

  function statusChange(frame) {
    const view = thread.get(frame.message);
    if (!view) { socket.sync(); return; }
    if (TERMINAL.has(view.m.status)) { return; }
    if (frame.type === "queued") {
      if (view.m.status !== "queued") { return; }
      view.m.queue_position = frame.position;
      if (typeof frame.waiting === "string") { view.m.waiting = frame.waiting; }
    } else if (view.m.status === "queued") {
      view.m.status = "streaming";
      view.m.queue_position = null;
      view.m.waiting = "";
    }
    view.setStatusOnly();
    thread.refresh();
  }

  function stream(frame) {
    const view = thread.get(frame.message);
    if (!view || !view.applyStream(frame)) { socket.sync(); return; }
    if (frame.type === "tool" || frame.type === "notice") { thread.refresh(); } else { thread.contentGrew(); }
  }

  // A search result in this same conversation only changes the address's fragment.
  window.addEventListener("hashchange", () => thread.showHit());

  composer.update();
  socket.connect();

  // The one global, for tests and debugging only (no module reads it): the client's view of the thread.
  // eslint-disable-next-line no-restricted-syntax
  window.gptossChat = {
    connected: () => socket.connected,
    messages: () => thread.viewsInOrder().map((v) => ({ ...v.m })),
  };
}
