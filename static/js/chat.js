// The live conversation: one WebSocket per conversation page (docs/protocol.md).
//
// Postgres is the truth: every (re)connect starts from the server's `state` frame, and the stream events
// after it are applied in `seq` order (older ones dropped, a gap answered with `sync`). Model and user text
// is only ever set with textContent; the one innerHTML is the server's sanitized `html` of a message.
(function () {
  "use strict";

  var main = document.querySelector("main[data-ws-url]");
  if (!main || !window.WebSocket) { return; }

  var thread = document.getElementById("thread");
  var composer = document.querySelector("[data-role=composer]");
  var textarea = composer ? composer.querySelector("textarea") : null;
  var sendButton = composer ? composer.querySelector("[data-role=send]") : null;
  var draftKey = "gptoss:draft:" + main.getAttribute("data-conversation-id");
  var IN_FLIGHT = { queued: true, streaming: true };
  var TERMINAL = { done: true, cancelled: true, failed: true, interrupted: true };

  // --- Small DOM helpers ---------------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function button(className, label, role, title) {
    var b = el("button", className, label);
    b.type = "button";
    if (role) { b.setAttribute("data-role", role); }
    if (title) {
      b.title = title;
      // Icon buttons need a name; text buttons keep their visible text as their name.
      if (label.length <= 2) { b.setAttribute("aria-label", title); }
    }
    return b;
  }

  function ordinal(n) {
    var mod100 = n % 100;
    var suffix = "th";
    if (mod100 < 11 || mod100 > 13) { suffix = { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th"; }
    return n + suffix;
  }

  function clientId() {
    return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  }

  // --- Scrolling: follow the stream unless the reader scrolled up --------------------------------------

  var stickToBottom = true;
  var lastScrollTop = thread.scrollTop;
  var lastScrollHeight = thread.scrollHeight;
  var jumpButton = button("jump-btn", "↓ New text", "jump", "Scroll to the newest text");
  jumpButton.hidden = true;
  main.insertBefore(jumpButton, composer);

  function distanceFromBottom() { return thread.scrollHeight - thread.scrollTop - thread.clientHeight; }
  thread.addEventListener("scroll", function () {
    // Only the reader moving up lets go of the bottom: text arriving between our own scroll and this
    // event must not count as "scrolled away".
    var shrunk = thread.scrollHeight < lastScrollHeight;
    if (!shrunk && thread.scrollTop < lastScrollTop - 4) { stickToBottom = false; }
    if (distanceFromBottom() < 48) { stickToBottom = true; }
    if (stickToBottom) { jumpButton.hidden = true; }
    lastScrollTop = thread.scrollTop;
    lastScrollHeight = thread.scrollHeight;
  }, { passive: true });
  jumpButton.addEventListener("click", function () {
    stickToBottom = true;
    thread.scrollTop = thread.scrollHeight;
    lastScrollTop = thread.scrollTop;
    jumpButton.hidden = true;
  });

  var scrollQueued = false;
  function contentGrew() {
    if (scrollQueued) { return; }
    scrollQueued = true;
    window.requestAnimationFrame(function () {
      scrollQueued = false;
      if (stickToBottom) { thread.scrollTop = thread.scrollHeight; lastScrollTop = thread.scrollTop; }
      else if (distanceFromBottom() > 48) { jumpButton.hidden = false; }
    });
  }

  // --- One message ---------------------------------------------------------------------------------------

  function MessageView(m) {
    this.id = m.id;
    this.role = m.role;
    this.m = { content: "", reasoning: "", tool_calls: [], seq: 0 };
    this.el = el("article", "message message-" + m.role);
    this.el.id = "message-" + m.id;
    this.el.setAttribute("data-message-id", m.id);
    this.autoOpenedReasoning = false;
    if (m.role === "assistant") { this.buildAssistant(); } else { this.buildUser(); }
    this.setFull(m);
  }

  MessageView.prototype.buildUser = function () {
    this.contentEl = el("div", "bubble markdown");
    this.contentEl.setAttribute("data-role", "content");
    this.actionsEl = el("div", "message-actions");
    this.el.append(this.contentEl, this.actionsEl);
  };

  MessageView.prototype.buildAssistant = function () {
    var self = this;
    this.reasoningEl = el("details", "reasoning");
    this.reasoningEl.setAttribute("data-role", "reasoning");
    this.reasoningSummary = el("summary", null, "Reasoning");
    this.reasoningBody = el("div", "reasoning-body");
    this.reasoningBody.setAttribute("data-role", "reasoning-body");
    this.reasoningText = document.createTextNode("");
    this.reasoningBody.appendChild(this.reasoningText);
    this.reasoningEl.append(this.reasoningSummary, this.reasoningBody);
    this.reasoningEl.hidden = true;
    this.reasoningSummary.addEventListener("click", function () { self.userToggledReasoning = true; self.autoOpenedReasoning = false; });
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
  };

  MessageView.prototype.inFlight = function () { return !!IN_FLIGHT[this.m.status]; };

  // Take the stored message (state and done frames replace everything; a `message` frame may lag behind
  // the deltas already shown, e.g. Stop before the worker's last write: then only its status is taken).
  MessageView.prototype.setFull = function (m, partial) {
    var old = this.m;
    var next = Object.assign({}, m);
    this.staleHtml = false;
    if (partial && typeof m.seq === "number" && m.seq < old.seq) {
      next.content = old.content; next.reasoning = old.reasoning; next.tool_calls = old.tool_calls;
      next.seq = old.seq;
      this.staleHtml = true;
    }
    next.seq = typeof next.seq === "number" ? next.seq : 0;
    next.content = next.content || "";
    next.reasoning = next.reasoning || "";
    next.tool_calls = (next.tool_calls || []).slice();
    this.m = next;
    this.el.setAttribute("data-status", next.status);
    this.el.setAttribute("aria-busy", IN_FLIGHT[next.status] ? "true" : "false");
    this.el.className = "message message-" + this.role + " status-" + next.status;
    if (this.role === "assistant") {
      this.renderReasoning(true);
      this.renderTools();
      this.renderContent(true);
      this.renderNotice();
      this.renderMeta();
    } else {
      this.renderContent(true);
    }
  };

  MessageView.prototype.renderContent = function (full) {
    var m = this.m;
    var streaming = this.role === "assistant" && IN_FLIGHT[m.status];
    if (!streaming && typeof m.html === "string" && !this.staleHtml) {
      if (full || this.streamText) {
        // The server's sanitized rendering: the one source of truth for how a finished message looks.
        this.contentEl.innerHTML = m.html;
        this.streamText = null;
        if (window.gptossAddCopyButtons) { window.gptossAddCopyButtons(this.contentEl); }
      }
      return;
    }
    if (!this.streamText || full) {
      this.contentEl.textContent = "";
      var holder = el("div", "stream-text");
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
  };

  MessageView.prototype.renderReasoning = function (full) {
    var m = this.m;
    var has = !!m.reasoning;
    this.reasoningEl.hidden = !has;
    if (this.reasoningText.data !== m.reasoning) { this.reasoningText.data = m.reasoning; }
    var live = m.status === "streaming" && !m.content;
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
  };

  MessageView.prototype.renderTools = function () {
    var calls = this.m.tool_calls;
    while (this.toolsEl.children.length > calls.length) { this.toolsEl.lastChild.remove(); }
    for (var i = 0; i < calls.length; i++) {
      var card = this.toolsEl.children[i];
      if (!card) {
        card = el("details", "tool-card");
        card.setAttribute("data-role", "tool");
        var summary = el("summary");
        summary.append(el("span", "tool-icon", "⚙"), el("span", "tool-name"), el("span", "tool-state"));
        card.append(summary, el("div", "tool-body"));
        this.toolsEl.appendChild(card);
      }
      this.fillTool(card, calls[i] || {});
    }
  };

  MessageView.prototype.fillTool = function (card, call) {
    var done = call.result !== undefined && call.result !== null;
    var failed = call.error === true || (done && /^Error:/.test(String(call.result)));
    card.classList.toggle("running", !done);
    card.classList.toggle("failed", failed);
    card.querySelector(".tool-name").textContent = call.recipient || "tool";
    card.querySelector(".tool-state").textContent = !done ? "running…" : failed ? "error" : "done";
    var body = card.querySelector(".tool-body");
    body.textContent = "";
    body.append(el("div", "tool-label", "Arguments"), el("pre", "tool-pre", call.arguments || ""));
    if (done) { body.append(el("div", "tool-label", "Result"), el("pre", "tool-pre", String(call.result))); }
    if (typeof call.error === "string" && call.error) {
      body.append(el("div", "tool-label", "Error"), el("pre", "tool-pre", call.error));
    }
  };

  MessageView.prototype.renderNotice = function () {
    this.noticeEl.hidden = !this.m.notice;
    this.noticeEl.textContent = this.m.notice || "";
  };

  MessageView.prototype.renderMeta = function () {
    var m = this.m;
    var meta = this.metaEl;
    meta.textContent = "";
    var badge = null;
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
    if (badge) { badge.setAttribute("data-role", badge.getAttribute("data-role") || "status"); meta.appendChild(badge); }
    if (m.status === "queued" && m.waiting) {
      // e.g. no GPU worker serves its model right now: the reply keeps its place, and the reader knows why.
      var note = el("span", "waiting-note", m.waiting);
      note.setAttribute("data-role", "waiting");
      meta.appendChild(note);
    }
    if (m.status === "failed" && m.error) { meta.appendChild(el("span", "error-text", m.error)); }
    if (m.status === "interrupted") {
      meta.appendChild(el("span", "muted", m.error || "The answer was cut off. Retry to answer again."));
    }
    var s = m.stats || {};
    if (TERMINAL[m.status] && s.ttft_ms !== null && s.ttft_ms !== undefined) {
      var stats = el("span", "stats");
      stats.setAttribute("data-role", "stats");
      var add = function (text, title) { var x = el("span", "stat", text); if (title) { x.title = title; } stats.appendChild(x); };
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
  };

  function formatMs(ms) { return ms >= 10000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms) + " ms"; }

  // Apply one stream event; return false when a gap means the state must be reloaded.
  MessageView.prototype.applyStream = function (ev) {
    var m = this.m;
    if (typeof ev.seq !== "number" || ev.seq <= m.seq || TERMINAL[m.status]) { return true; }
    if (ev.seq !== m.seq + 1) { return false; }
    m.seq = ev.seq;
    this.el.setAttribute("data-seq", ev.seq);
    if (m.status === "queued") { m.status = "streaming"; m.queue_position = null; m.waiting = ""; this.setStatusOnly(); }
    if (ev.type === "delta") {
      if (ev.reasoning) { m.reasoning += ev.reasoning; }
      if (ev.content) { m.content += ev.content; }
      this.renderReasoning(false);
      this.renderContent(false);
    } else if (ev.type === "tool") {
      m.tool_calls[ev.index] = ev.call;
      this.renderTools();
    } else if (ev.type === "notice") {
      m.notice = ev.notice;
      this.renderNotice();
    }
    return true;
  };

  MessageView.prototype.setStatusOnly = function () {
    this.el.setAttribute("data-status", this.m.status);
    this.el.setAttribute("aria-busy", IN_FLIGHT[this.m.status] ? "true" : "false");
    this.el.className = "message message-" + this.role + " status-" + this.m.status;
    this.renderMeta();
    this.renderContent(false);
  };

  // --- The thread ----------------------------------------------------------------------------------------

  var views = new Map();
  var emptyState = thread.querySelector(".empty-state");
  var editing = null;

  function viewsInOrder() {
    var list = [];
    thread.querySelectorAll(":scope > article.message").forEach(function (node) {
      var v = views.get(Number(node.getAttribute("data-message-id")));
      if (v) { list.push(v); }
    });
    return list;
  }

  function place(view) {
    // Messages appear in id order (the order they were created in).
    var after = null;
    views.forEach(function (other) {
      if (other.id > view.id && other.el.parentNode === thread && (!after || other.id < after.id)) { after = other; }
    });
    if (view.el.parentNode !== thread || (after && view.el.nextSibling !== after.el)) {
      thread.insertBefore(view.el, after ? after.el : null);
    }
  }

  function upsert(m, partial) {
    var view = views.get(m.id);
    if (view) { view.setFull(m, partial); } else { view = new MessageView(m); views.set(m.id, view); place(view); }
    return view;
  }

  function remove(id) {
    var view = views.get(id);
    if (!view) { return; }
    if (editing && editing.view === view) { editing = null; }
    view.el.remove();
    views.delete(id);
  }

  function renderState(frame) {
    var seen = {};
    if (!initialised) {
      // The server-rendered articles give way to live ones built from the same stored state.
      thread.querySelectorAll(":scope > article.message").forEach(function (node) { node.remove(); });
    }
    (frame.messages || []).forEach(function (m) { seen[m.id] = true; upsert(m); });
    Array.from(views.keys()).forEach(function (id) { if (!seen[id]) { remove(id); } });
    if (typeof frame.title === "string") { setTitle(frame.title, false); }
    if (!initialised || stickToBottom) { thread.scrollTop = thread.scrollHeight; lastScrollTop = thread.scrollTop; }
    initialised = true;
    refresh();
  }

  function refresh() {
    var list = viewsInOrder();
    if (emptyState) { emptyState.hidden = list.length > 0; }
    var inFlight = list.some(function (v) { return v.role === "assistant" && v.inFlight(); });
    var lastAssistant = null;
    var lastUser = null;
    list.forEach(function (v) { if (v.role === "assistant") { lastAssistant = v; } else { lastUser = v; } });
    list.forEach(function (v) {
      var actions = v.actionsEl;
      if (!actions) { return; }
      actions.textContent = "";
      if (inFlight || !connected) { return; }
      // A failed reply whose Retry could only fail again (the question cannot fit, the model is not served)
      // offers none: the user edits the question or picks another model instead.
      if (v === lastAssistant && TERMINAL[v.m.status] && v.m.retryable !== false) {
        var retry = v.m.status === "failed" || v.m.status === "interrupted";
        var b = button("btn btn-tiny", retry ? "Retry" : "Regenerate", retry ? "retry" : "regenerate",
          retry ? "Answer this question again" : "Generate a new answer to this question");
        b.addEventListener("click", function () { regenerate(v); });
        actions.appendChild(b);
      }
      if (v === lastUser && !(editing && editing.view === v)) {
        var e = button("btn btn-tiny", "Edit", "edit", "Edit this message and send it again");
        e.addEventListener("click", function () { startEdit(v); });
        actions.appendChild(e);
      }
    });
    setInFlight(inFlight);
    contentGrew();
  }

  // --- Title ---------------------------------------------------------------------------------------------

  function setTitle(title, stored) {
    var shown = title || "New conversation";
    var h1 = document.querySelector("[data-role=title]");
    if (h1) { h1.textContent = shown; }
    var input = document.querySelector(".rename input[name=title]");
    if (stored && input && document.activeElement !== input) { input.value = title; }
    var link = document.querySelector(".conversation-link.active .title");
    if (link) { link.textContent = shown; }
    document.title = shown + " · gptoss-web";
  }

  // --- Composer, stop, regenerate, edit ------------------------------------------------------------------

  var pending = null; // {client_id, text} of the send waiting for its ack
  var statusEl = el("p", "composer-status", "Reconnecting…");
  statusEl.setAttribute("data-role", "conn");
  statusEl.setAttribute("role", "status");
  statusEl.hidden = true;
  var stopButton = button("stop-btn", "■", "stop", "Stop generating (Esc)");
  stopButton.hidden = true;
  if (composer) {
    composer.insertBefore(statusEl, composer.firstChild);
    sendButton.parentNode.insertBefore(stopButton, sendButton);
    stopButton.addEventListener("click", stop);
    composer.addEventListener("submit", function (event) {
      event.preventDefault();
      send();
    });
    textarea.addEventListener("input", function () {
      if (!pending) { showError(null); }
      saveDraft();
    });
    if (!textarea.value) {
      textarea.value = loadDraft();
      if (textarea.value) { growTextarea(); }
    }
  }

  // The typed text also survives a reload of the page, until the server has it.
  function loadDraft() {
    try { return window.sessionStorage.getItem(draftKey) || ""; } catch (err) { return ""; }
  }
  function saveDraft() {
    try {
      if (textarea.value) { window.sessionStorage.setItem(draftKey, textarea.value); }
      else { window.sessionStorage.removeItem(draftKey); }
    } catch (err) { /* storage full or disabled: the textarea still holds the text */ }
  }

  function errorEl() {
    var node = composer.querySelector("[data-role=composer-error]");
    if (!node) {
      node = el("p", "alert alert-error composer-error");
      node.setAttribute("data-role", "composer-error");
      node.setAttribute("role", "alert");
      composer.insertBefore(node, composer.querySelector(".composer-box"));
    }
    return node;
  }

  function showError(text) {
    if (!composer) { return; }
    var node = composer.querySelector("[data-role=composer-error]");
    if (!text) { if (node) { node.remove(); } return; }
    node = errorEl();
    node.textContent = text;
  }

  function growTextarea() { textarea.dispatchEvent(new Event("input")); }

  function send() {
    var text = textarea.value;
    if (!text.trim() || pending) { return; }
    if (!connected) { showError(null); return; }
    showError(null);
    pending = { client_id: clientId(), text: text };
    updateComposer();
    if (!transmit({ action: "send", text: text, client_id: pending.client_id })) { pending = null; updateComposer(); }
  }

  function stop() { transmit({ action: "stop" }); }

  function regenerate(view) { transmit({ action: "regenerate", message: view.id, client_id: clientId() }); }

  function startEdit(view) {
    if (editing) { cancelEdit(); }
    var form = el("form", "edit-form");
    form.setAttribute("data-role", "edit-form");
    var area = el("textarea");
    area.value = view.m.content;
    area.rows = Math.min(12, Math.max(2, view.m.content.split("\n").length));
    area.setAttribute("aria-label", "Edit your message");
    var error = el("p", "field-error");
    error.hidden = true;
    var row = el("div", "edit-actions");
    var cancel = button("btn btn-small", "Cancel", "edit-cancel");
    var save = el("button", "btn btn-small btn-primary", "Send");
    save.type = "submit";
    save.setAttribute("data-role", "edit-send");
    row.append(cancel, save);
    form.append(area, error, row);
    view.contentEl.hidden = true;
    view.el.insertBefore(form, view.contentEl);
    editing = { view: view, form: form, area: area, error: error, client_id: null };
    cancel.addEventListener("click", cancelEdit);
    area.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); cancelEdit(); }
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!area.value.trim() || !connected) { return; }
      editing.client_id = clientId();
      error.hidden = true;
      transmit({ action: "edit", message: view.id, text: area.value, client_id: editing.client_id });
    });
    area.focus();
    refresh();
  }

  function cancelEdit() {
    if (!editing) { return; }
    editing.form.remove();
    editing.view.contentEl.hidden = false;
    editing = null;
    refresh();
  }

  var inFlightNow = false;
  function setInFlight(value) {
    inFlightNow = value;
    stopButton.hidden = !value;
  }

  function updateComposer() {
    if (!composer) { return; }
    statusEl.hidden = connected;
    composer.classList.toggle("offline", !connected);
    sendButton.disabled = !connected || !!pending;
    stopButton.disabled = !connected;
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !inFlightNow || event.defaultPrevented) { return; }
    if (document.querySelector("details.popover[open]")) { return; }
    stop();
  });

  // --- The socket ----------------------------------------------------------------------------------------

  var socket = null;
  var connected = false;
  var initialised = false;
  var syncPending = false;
  var backoff = 500;
  var reconnectTimer = null;

  function wsUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + main.getAttribute("data-ws-url");
  }

  function transmit(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) { return false; }
    socket.send(JSON.stringify(frame));
    return true;
  }

  function sync() {
    if (syncPending) { return; }
    syncPending = transmit({ action: "sync" });
  }

  function connect() {
    reconnectTimer = null;
    var ws = new WebSocket(wsUrl());
    socket = ws;
    ws.addEventListener("message", function (event) {
      if (socket !== ws) { return; }
      var frame;
      try { frame = JSON.parse(event.data); } catch (err) { return; }
      handle(frame);
    });
    ws.addEventListener("close", function (event) {
      if (socket !== ws) { return; }
      socket = null;
      connected = false;
      syncPending = false;
      if (pending) { pending = null; } // Unknown whether it arrived; the state after reconnecting tells.
      if (event.code === 4401) {
        // The session ended (signed out, password changed, account deactivated). Loading the page again
        // leads to the sign-in page, and back here after it; the draft waits in sessionStorage meanwhile.
        // (A browser whose own session was rotated by a password change just gets the page again.)
        if (textarea) { saveDraft(); }
        statusEl.textContent = "Your session has ended. Taking you to the sign-in page…";
        updateComposer();
        window.location.assign(window.location.pathname);
        return;
      }
      if (event.code === 4404) {
        // The conversation is gone (deleted in another tab): nothing to reconnect to.
        statusEl.textContent = "This conversation no longer exists.";
        updateComposer();
        refresh();
        return;
      }
      statusEl.textContent = "Reconnecting…";
      updateComposer();
      refresh();
      reconnectTimer = window.setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 5000);
    });
  }

  function handle(frame) {
    switch (frame.type) {
      case "state":
        syncPending = false;
        if (!connected) { connected = true; backoff = 500; updateComposer(); }
        renderState(frame);
        break;
      case "message":
        if (frame.message) { upsert(frame.message, true); refresh(); }
        break;
      case "done":
        if (frame.message) { upsert(frame.message); refresh(); }
        break;
      case "removed":
        (frame.messages || []).forEach(remove);
        refresh();
        break;
      case "queued":
      case "started":
        statusChange(frame);
        break;
      case "delta":
      case "tool":
      case "notice":
        stream(frame);
        break;
      case "title":
        setTitle(frame.title || "", true);
        break;
      case "ack":
        ack(frame);
        break;
      case "error":
        failed(frame);
        break;
      default:
        break;
    }
  }

  function statusChange(frame) {
    var view = views.get(frame.message);
    if (!view) { sync(); return; }
    if (TERMINAL[view.m.status]) { return; }
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
    refresh();
  }

  function stream(frame) {
    var view = views.get(frame.message);
    if (!view || !view.applyStream(frame)) { sync(); return; }
    if (frame.type === "tool" || frame.type === "notice") { refresh(); } else { contentGrew(); }
  }

  function ack(frame) {
    if (pending && frame.client_id === pending.client_id) {
      if (textarea.value === pending.text) { textarea.value = ""; growTextarea(); saveDraft(); }
      pending = null;
      showError(null);
      updateComposer();
      stickToBottom = true;
    } else if (editing && frame.client_id === editing.client_id) {
      cancelEdit();
      stickToBottom = true;
    }
  }

  function failed(frame) {
    var text = frame.message || "Something went wrong.";
    if (editing && frame.client_id && frame.client_id === editing.client_id) {
      editing.error.textContent = text;
      editing.error.hidden = false;
      return;
    }
    if (pending && frame.client_id === pending.client_id) { pending = null; updateComposer(); }
    showError(text);
  }

  updateComposer();
  connect();

  // For tests and debugging: the client's view of the conversation.
  window.gptossChat = {
    connected: function () { return connected; },
    messages: function () { return viewsInOrder().map(function (v) { return Object.assign({}, v.m); }); },
  };
})();
