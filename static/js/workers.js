// GPU worker dashboard: refresh the tables from workers.json every 2 seconds (text only, never HTML).
const board = document.getElementById("workers-board");
const gib = (n) => ((n || 0) / 1024 ** 3).toFixed(1) + " GiB";
function row(cells, up) {
  const tr = document.createElement("tr");
  tr.className = up ? "is-up" : "is-down";
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  return tr;
}
function render(data) {
  const models = document.getElementById("models-body");
  models.replaceChildren(...data.models.map((m) =>
    row([m.name, m.queue, `${m.workers_ready} of ${m.workers_up} up` +
      (m.workers_waiting.length ? `, ${m.workers_waiting.length} waiting for PostgreSQL or Redis` : "")],
    m.workers_ready > 0)));
  const workers = document.getElementById("workers-body");
  if (!data.workers.length) {
    const empty = row(["No GPU worker has sent a heartbeat yet."], false);
    empty.firstChild.colSpan = 10;
    workers.replaceChildren(empty);
    return;
  }
  workers.replaceChildren(...data.workers.map((w) => {
    const tr = row([
      w.name, w.model, (w.up ? w.state : "down") + (w.error ? ` (${w.error})` : ""),
      `${w.slots_busy} / ${w.slots_total}`, String(w.queue_depth), String(w.tokens_per_s_1m),
      w.gpu ? `${w.gpu.name} (${w.gpu.utilization} % busy)` : "none (CPU)",
      w.gpu ? `${gib(w.gpu.memory_used)} / ${gib(w.gpu.memory_total)}` : "–",
      `${gib(w.ram_used)} / ${gib(w.ram_total)}`, `${Math.round(w.seconds_since)} s ago`,
    ], w.up);
    tr.dataset.worker = w.name;
    return tr;
  }));
}
async function refresh() {
  try {
    const response = await fetch(board.dataset.source, { headers: { Accept: "application/json" } });
    if (response.ok) render(await response.json());
  } catch (_) { /* keep the last view; try again */ }
}
if (board) { setInterval(refresh, 2000); }
