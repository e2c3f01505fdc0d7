// The conversation's WebSocket (docs/protocol.md): reconnects with backoff, and counts as connected from
// the server's first `state` frame on. Losing it means "reload the state", never "repair it".

export class Socket {
  /** *handlers*: frame(frame), connected(), closed(code). */
  constructor(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.ws = null;
    this.connected = false;
    this.syncPending = false;
    this.backoff = 500;
  }

  url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + this.path;
  }

  /** Send *frame*; return false when the socket is not open (nothing was sent). */
  transmit(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) { return false; }
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Ask for the `state` again (once until it arrives). */
  sync() {
    if (this.syncPending) { return; }
    this.syncPending = this.transmit({ action: "sync" });
  }

  connect() {
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) { return; }
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.type === "state") {
        this.syncPending = false;
        if (!this.connected) {
          this.connected = true;
          this.backoff = 500;
          this.handlers.connected();
        }
      }
      this.handlers.frame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) { return; }
      this.ws = null;
      this.connected = false;
      this.syncPending = false;
      // 4401: the session ended; 4404: the conversation is gone. Neither comes back by reconnecting.
      const reconnect = event.code !== 4401 && event.code !== 4404;
      this.handlers.closed(event.code);
      if (reconnect) {
        window.setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 5000);
      }
    });
  }
}
