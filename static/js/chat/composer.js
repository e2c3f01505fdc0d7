// The composer and the message actions: send (with a draft that survives a reload until the server has
// it), stop, regenerate and edit (any answer or question of the branch on screen), switch to another version,
// and the errors the server answers them with.
import { button, el } from "./dom.js";
import { TERMINAL } from "./fold.js";

function clientId() {
  return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
}

export class Composer {
  /** *socket* sends the frames; *thread* shows the messages the actions belong to. */
  constructor(main, composerEl, socket, thread) {
    this.form = composerEl;
    this.socket = socket;
    this.thread = thread;
    this.textarea = composerEl ? composerEl.querySelector("textarea") : null;
    this.sendButton = composerEl ? composerEl.querySelector("[data-role=send]") : null;
    this.draftKey = "gptoss:draft:" + main.getAttribute("data-conversation-id");
    this.pending = null; // {client_id, text} of the send waiting for its ack
    this.sendOnConnect = false; // Enter was pressed while the page was still connecting
    this.everConnected = false;
    this.editing = null;
    this.inFlight = false;
    this.statusEl = el("p", "composer-status", "Reconnecting…");
    this.statusEl.setAttribute("data-role", "conn");
    this.statusEl.setAttribute("role", "status");
    this.statusEl.hidden = true;
    this.stopButton = button("stop-btn", "■", "stop", "Stop generating (Esc)");
    this.stopButton.hidden = true;
    if (composerEl) {
      composerEl.insertBefore(this.statusEl, composerEl.firstChild);
      this.sendButton.parentNode.insertBefore(this.stopButton, this.sendButton);
      this.stopButton.addEventListener("click", () => this.stop());
      composerEl.addEventListener("submit", (event) => {
        event.preventDefault();
        this.send();
      });
      this.textarea.addEventListener("input", () => {
        if (!this.pending) { this.showError(null); }
        this.saveDraft();
      });
      if (!this.textarea.value) {
        this.textarea.value = this.loadDraft();
        if (this.textarea.value) { this.growTextarea(); }
      }
    }
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || !this.inFlight || event.defaultPrevented) { return; }
      if (document.querySelector("details.popover[open]")) { return; }
      this.stop();
    });
  }

  // --- The draft ---------------------------------------------------------------------------------------

  // The typed text also survives a reload of the page, until the server has it.
  loadDraft() {
    try { return window.sessionStorage.getItem(this.draftKey) || ""; } catch { return ""; }
  }

  saveDraft() {
    if (!this.textarea) { return; }
    try {
      if (this.textarea.value) { window.sessionStorage.setItem(this.draftKey, this.textarea.value); }
      else { window.sessionStorage.removeItem(this.draftKey); }
    } catch { /* storage full or disabled: the textarea still holds the text */ }
  }

  growTextarea() { this.textarea.dispatchEvent(new Event("input")); }

  /** The start page's message started conversation *id* at *url*: its draft and its no-script form follow. */
  moved(id, url) {
    const draft = this.loadDraft();
    try { window.sessionStorage.removeItem(this.draftKey); } catch { /* storage disabled */ }
    this.draftKey = "gptoss:draft:" + id;
    if (draft) {
      try { window.sessionStorage.setItem(this.draftKey, draft); } catch { /* the textarea holds it */ }
    }
    if (this.form) { this.form.action = url + "messages/"; }
  }

  // --- Errors ------------------------------------------------------------------------------------------

  showError(text) {
    if (!this.form) { return; }
    let node = this.form.querySelector("[data-role=composer-error]");
    if (!text) {
      if (node) { node.remove(); }
      return;
    }
    if (!node) {
      node = el("p", "alert alert-error composer-error");
      node.setAttribute("data-role", "composer-error");
      node.setAttribute("role", "alert");
      this.form.insertBefore(node, this.form.querySelector(".composer-box"));
    }
    node.textContent = text;
  }

  // --- Actions -----------------------------------------------------------------------------------------

  send() {
    const text = this.textarea.value;
    if (!text.trim() || this.pending) { return; }
    this.showError(null);
    if (!this.socket.connected) {
      // Pressed while the page that just loaded is still connecting: sent once it is. (After a lost
      // connection nothing is sent by itself: the state the reconnect brings may change the reader's mind.)
      this.sendOnConnect = !this.everConnected;
      return;
    }
    this.sendOnConnect = false;
    this.pending = { client_id: clientId(), text };
    this.update();
    if (!this.socket.transmit({ action: "send", text, client_id: this.pending.client_id })) {
      this.pending = null;
      this.update();
    }
  }

  stop() { this.socket.transmit({ action: "stop" }); }

  /** Show the branch through the message *id* (another version of a message on screen). */
  switchTo(id) {
    if (this.inFlight || !this.socket.connected) { return; }
    this.showError(null);
    this.socket.transmit({ action: "switch", message: id, client_id: clientId() });
  }

  regenerate(view) { this.socket.transmit({ action: "regenerate", message: view.id, client_id: clientId() }); }

  startEdit(view) {
    if (this.editing) { this.cancelEdit(); }
    const form = el("form", "edit-form");
    form.setAttribute("data-role", "edit-form");
    const area = el("textarea");
    area.value = view.m.content;
    area.rows = Math.min(12, Math.max(2, view.m.content.split("\n").length));
    area.setAttribute("aria-label", "Edit your message");
    const error = el("p", "field-error");
    error.hidden = true;
    const row = el("div", "edit-actions");
    const cancel = button("btn btn-small", "Cancel", "edit-cancel");
    const save = el("button", "btn btn-small btn-primary", "Send");
    save.type = "submit";
    save.setAttribute("data-role", "edit-send");
    row.append(cancel, save);
    form.append(area, error, row);
    view.contentEl.hidden = true;
    view.el.insertBefore(form, view.contentEl);
    const editing = { view, form, area, error, client_id: null };
    this.editing = editing;
    cancel.addEventListener("click", () => this.cancelEdit());
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.cancelEdit();
      }
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!area.value.trim() || !this.socket.connected) { return; }
      editing.client_id = clientId();
      error.hidden = true;
      this.socket.transmit({ action: "edit", message: view.id, text: area.value, client_id: editing.client_id });
    });
    area.focus();
    this.thread.refresh();
  }

  cancelEdit() {
    if (!this.editing) { return; }
    this.editing.form.remove();
    this.editing.view.contentEl.hidden = false;
    this.editing = null;
    this.thread.refresh();
  }

  /**
   * Give every finished message its Copy, every finished reply its Retry or Regenerate and every question its
   * Edit (these two none while a reply runs, when the versions' arrows wait too).
   */
  decorate({ list, inFlight }) {
    if (this.editing && !list.includes(this.editing.view)) { this.editing = null; } // another branch now
    list.forEach((v) => {
      v.el.querySelectorAll(".branch-btn").forEach((b) => { b.disabled = inFlight || !b.value; });
      const actions = v.actionsEl;
      if (!actions) { return; }
      // Copy stays where it is (a keyboard user's focus on it survives the refresh); the rest is rebuilt.
      const copy = v.copyable() ? v.copyButton : null;
      Array.from(actions.children).forEach((child) => { if (child !== copy) { child.remove(); } });
      if (copy && copy.parentNode !== actions) { actions.insertBefore(copy, actions.firstChild); }
      if (inFlight || !this.socket.connected) { return; }
      // A failed reply whose Retry could only fail again (the question cannot fit, the model is not served)
      // offers none: the user edits the question or picks another model instead.
      if (v.role === "assistant" && TERMINAL.has(v.m.status) && v.m.retryable !== false) {
        const retry = v.m.status === "failed" || v.m.status === "interrupted";
        const b = button("btn btn-tiny", retry ? "Retry" : "Regenerate", retry ? "retry" : "regenerate",
          retry ? "Reply to this question again" : "Write a new reply to this question");
        b.addEventListener("click", () => this.regenerate(v));
        actions.appendChild(b);
      }
      if (v.role === "user" && !(this.editing && this.editing.view === v)) {
        const e = button("btn btn-tiny", "Edit", "edit", "Edit this message and send it again");
        e.addEventListener("click", () => this.startEdit(v));
        actions.appendChild(e);
      }
    });
    this.inFlight = inFlight;
    this.stopButton.hidden = !inFlight;
  }

  /** Show whether the socket is connected, and whether a send waits for its ack. */
  update(status) {
    if (!this.form) { return; }
    if (status) { this.statusEl.textContent = status; }
    const connected = this.socket.connected;
    this.statusEl.hidden = connected;
    this.form.classList.toggle("offline", !connected);
    this.sendButton.disabled = !connected || !!this.pending;
    this.stopButton.disabled = !connected;
    if (connected) { this.everConnected = true; }
    if (connected && this.sendOnConnect) { this.send(); }
  }

  /** The socket closed: whether the send waiting for its ack arrived, the state after reconnecting tells. */
  disconnected() {
    if (this.pending) { this.pending = null; }
  }

  /** The server stored the frame *frame.client_id*. */
  ack(frame) {
    if (this.pending && frame.client_id === this.pending.client_id) {
      if (this.textarea.value === this.pending.text) {
        this.textarea.value = "";
        this.growTextarea();
        this.saveDraft();
      }
      this.pending = null;
      this.showError(null);
      this.update();
      this.thread.stickToBottom = true;
    } else if (this.editing && frame.client_id === this.editing.client_id) {
      this.cancelEdit();
      this.thread.stickToBottom = true;
    }
  }

  /** The server refused a frame: say why where it was typed. */
  failed(frame) {
    const text = frame.message || "Something went wrong.";
    if (this.editing && frame.client_id && frame.client_id === this.editing.client_id) {
      this.editing.error.textContent = text;
      this.editing.error.hidden = false;
      return;
    }
    if (this.pending && frame.client_id === this.pending.client_id) {
      this.pending = null;
      this.update();
    }
    this.showError(text);
  }
}
