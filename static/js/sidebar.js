// The conversation lists (the sidebar, a project's, the archived one): the next page loads as the user
// nears its "Show more" link (which opens that page without JavaScript), each row's ⋯ menu posts in place,
// and the sidebar follows the user's other tabs (`sidebar` frames, docs/protocol.md).
//
// Rows are HTML the server renders (chat/_row.html); this module only places them, by their `data-sort`
// key (`<microseconds>.<id>`, newest first), and heads each recency group once.

const HEADINGS = { today: "Today", week: "Previous 7 days", older: "Older" };
const UNREAD_KEY = "gptoss.unread";

function sidebar() { return document.getElementById("sidebar"); }

function currentConversation() {
  const main = document.querySelector("main[data-conversation-id]");
  const id = main ? Number(main.getAttribute("data-conversation-id")) : NaN;
  return Number.isFinite(id) ? id : 0;
}

/** Return the sort key of a row as [microseconds, id]. */
function sortKey(row) {
  const [micros, id] = (row.getAttribute("data-sort") || "0.0").split(".");
  return [Number(micros), Number(id)];
}

/** Return whether *a* sorts before *b* (newer first, the higher id first on a tie). */
function newer(a, b) {
  const [am, ai] = sortKey(a);
  const [bm, bi] = sortKey(b);
  return am > bm || (am === bm && ai > bi);
}

function rowsOf(container) { return Array.from(container.querySelectorAll(":scope > .conversation-row")); }

/** Head each recency group of *container* once, in the order its rows are in. */
export function regroup(container) {
  if (!container || container.getAttribute("data-role") === "pinned") { return; }
  container.querySelectorAll(":scope > .group-head").forEach((head) => head.remove());
  if (container.getAttribute("data-list") === "archived") { return; }
  let previous = "";
  rowsOf(container).forEach((row) => {
    const group = row.getAttribute("data-group") || "";
    if (group !== previous && HEADINGS[group]) {
      const head = document.createElement("h3");
      head.className = "group-head";
      head.setAttribute("data-group-head", group);
      head.textContent = HEADINGS[group];
      container.insertBefore(head, row);
    }
    previous = group;
  });
}

/** Put *row* in *container* at its place; leave it out when it sorts below rows not loaded yet. */
function place(container, row) {
  const more = container.querySelector(":scope > [data-role=more]");
  const after = rowsOf(container).find((other) => newer(row, other));
  if (after) {
    container.insertBefore(row, after);
  } else if (!more) {
    container.append(row);
  } else {
    return false; // it comes with a later page
  }
  return true;
}

function readUnread() {
  try { return new Set(JSON.parse(window.localStorage.getItem(UNREAD_KEY) || "[]")); } catch { return new Set(); }
}

function writeUnread(ids) {
  try { window.localStorage.setItem(UNREAD_KEY, JSON.stringify(Array.from(ids).slice(-200))); } catch { /* private mode */ }
}

function markRow(row, unread) {
  const id = Number(row.getAttribute("data-conversation"));
  row.classList.toggle("unread", unread.has(id));
  const current = id === currentConversation();
  row.classList.toggle("active", current);
  const link = row.querySelector(".conversation-link");
  if (link) {
    link.classList.toggle("active", current);
    if (current) { link.setAttribute("aria-current", "page"); } else { link.removeAttribute("aria-current"); }
  }
}

function markAll() {
  const unread = readUnread();
  const open = currentConversation();
  if (open && unread.delete(open)) { writeUnread(unread); }
  document.querySelectorAll(".conversation-row").forEach((row) => markRow(row, unread));
}

function removeRows(id) {
  document.querySelectorAll(`#sidebar .conversation-row[data-conversation="${id}"]`).forEach((row) => {
    const container = row.parentElement;
    row.remove();
    regroup(container);
  });
  showPinned();
}

function showPinned() {
  const section = document.querySelector("#sidebar [data-role=pinned-section]");
  const pinned = document.querySelector("#sidebar [data-role=pinned]");
  if (section && pinned) { section.hidden = rowsOf(pinned).length === 0; }
  const empty = document.querySelector("#sidebar .empty-list");
  if (empty && document.querySelector("#sidebar .conversation-row")) { empty.remove(); }
}

/** Return what a row shows and offers, to tell whether a fresh copy from the server changes anything. */
function signature(row) {
  const link = row.querySelector(".conversation-link .title");
  const select = row.querySelector("select");
  return [
    row.getAttribute("data-sort"),
    row.getAttribute("data-group"),
    link ? link.textContent : "",
    Array.from(row.querySelectorAll(".row-meta .row-tag")).map((tag) => tag.textContent).join("|"),
    Array.from(row.querySelectorAll("form button")).map((b) => b.textContent).join("|"),
    select ? select.value : "",
  ].join("\n");
}

function parseRows(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return template.content;
}

function announce(text) {
  const status = document.querySelector("[data-role=sidebar-status]");
  if (status) { status.textContent = text; }
}

async function fetchRow(id) {
  const base = sidebar() ? sidebar().getAttribute("data-row-url") : "";
  if (!base) { return null; }
  const response = await fetch(base.replace("/0/", `/${id}/`), { credentials: "same-origin" });
  if (response.status === 404) { return "gone"; }
  if (!response.ok) { return null; }
  return parseRows(await response.text()).querySelector(".conversation-row");
}

/** Follow a change of the user's sidebar (a `sidebar` frame, or an action of this tab). */
export async function sidebarChanged(frame) {
  if (!sidebar()) { return; }
  if (frame.change === "projects") {
    refreshProjects();
    return;
  }
  const id = Number(frame.conversation);
  if (!id) { return; }
  if (frame.change === "deleted" || frame.change === "archived") {
    removeRows(id);
    return;
  }
  if (frame.change === "reply" && id !== currentConversation()) {
    const unread = readUnread();
    unread.add(id);
    writeUnread(unread);
  }
  const row = await fetchRow(id);
  if (row === "gone") { removeRows(id); return; }
  if (!row) { return; }
  const pinned = row.getAttribute("data-group") === "pinned";
  const shown = document.querySelector(
    `#sidebar [data-role=${pinned ? "pinned" : "recent"}] > .conversation-row[data-conversation="${id}"]`,
  );
  if (shown && signature(shown) === signature(row)) {
    // Already as the server has it (this tab's own action, then its `sidebar` frame): an open menu stays open.
    markRow(shown, readUnread());
    return;
  }
  const hadFocus = document.activeElement && document.activeElement.closest(`.conversation-row[data-conversation="${id}"]`);
  removeRows(id);
  const container = document.querySelector(`#sidebar [data-role=${pinned ? "pinned" : "recent"}]`);
  if (!container) { return; }
  const placed = place(container, row);
  regroup(container);
  showPinned();
  if (placed) {
    markRow(row, readUnread());
    if (hadFocus) { (row.querySelector("summary") || row.querySelector("a")).focus(); }
  }
}

async function refreshProjects() {
  try {
    const response = await fetch(window.location.pathname, { credentials: "same-origin" });
    if (!response.ok) { return; }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("#sidebar [data-role=projects]");
    const old = document.querySelector("#sidebar [data-role=projects]");
    if (fresh && old) { old.replaceWith(document.adoptNode(fresh)); }
  } catch {
    // Offline for a moment: the next page shows the projects.
  }
}

// --- The next page ----------------------------------------------------------------------------------------

async function loadMore(link, focusNew) {
  // Pressed while the scroll already loads it: the focus still goes on to the first new row.
  if (focusNew) { link.setAttribute("data-focus-new", ""); }
  if (link.getAttribute("aria-busy") === "true") { return; }
  link.setAttribute("aria-busy", "true");
  const container = link.parentElement;
  try {
    const url = new URL(link.href, window.location.href);
    url.searchParams.set("fragment", "1");
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) { link.removeAttribute("aria-busy"); return; }
    const fragment = parseRows(await response.text());
    const unread = readUnread();
    let first = null;
    fragment.querySelectorAll(".conversation-row").forEach((row) => {
      const id = row.getAttribute("data-conversation");
      // A row the live updates placed already (it moved up meanwhile) is not shown twice.
      if (container.querySelector(`:scope > .conversation-row[data-conversation="${id}"]`)) { return; }
      markRow(row, unread);
      container.insertBefore(row, link);
      first = first || row;
    });
    const next = fragment.querySelector("[data-role=more]");
    link.remove();
    if (next) {
      container.append(next);
      watch(next);
    }
    regroup(container);
    if (link.hasAttribute("data-focus-new") && first) { first.querySelector("a").focus(); }
    announce(first ? "More conversations loaded." : "No more conversations.");
  } catch {
    link.removeAttribute("aria-busy");
  }
}

let observer = null;

function watch(link) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    loadMore(link, true); // a keyboard user who pressed it goes on from the first new row
  });
  if (observer) { observer.observe(link); }
}

// --- Row actions --------------------------------------------------------------------------------------------

async function rowAction(form) {
  const change = form.getAttribute("data-row-action");
  const row = form.closest(".conversation-row");
  const id = row ? Number(row.getAttribute("data-conversation")) : 0;
  const menu = form.closest("details");
  // Read before the post: the `sidebar` frame of this very change may replace or remove the row meanwhile.
  const inSidebar = Boolean(row && row.closest("#sidebar"));
  const next = row && row.nextElementSibling ? row.nextElementSibling.querySelector("a") : null;
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      announce(body.error || "That did not work. Try again.");
      return;
    }
  } catch {
    announce("You are offline. Try again in a moment.");
    return;
  }
  if (menu) { menu.open = false; }
  if (!inSidebar && row) {
    // A project's or the archived list: that page's own list changes; reload it to show the new state.
    window.location.reload();
    return;
  }
  if (change === "archived") {
    await sidebarChanged({ change, conversation: id });
    announce("Archived. Find it under Archived, or by search.");
    if (next) { next.focus(); }
    return;
  }
  await sidebarChanged({ change, conversation: id });
  // The row was placed anew (pinned, moved): the focus goes to its ⋯ button where it now is.
  const placed = document.querySelector(`#sidebar .conversation-row[data-conversation="${id}"] summary`);
  if (placed) { placed.focus(); }
  announce({ pinned: "Pinned.", unpinned: "Unpinned.", moved: "Moved.", restored: "Restored." }[change] || "Done.");
}

/** Start the lists of this page: infinite scroll, row menus, unread marks. */
export function startSidebar() {
  markAll();
  if ("IntersectionObserver" in window) {
    observer = new IntersectionObserver((entries) => {
      entries.forEach((entry) => {
        if (entry.isIntersecting) { loadMore(entry.target, false); }
      });
    }, { rootMargin: "200px 0px" });
  }
  document.querySelectorAll("[data-role=more]").forEach(watch);
  document.addEventListener("submit", (event) => {
    const form = event.target.closest && event.target.closest("form[data-row-action]");
    if (!form) { return; }
    event.preventDefault();
    rowAction(form);
  });
  // Escape closes an open row menu and gives the focus back to its button.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") { return; }
    const menu = document.activeElement && document.activeElement.closest("details.row-menu[open]");
    if (!menu) { return; }
    event.preventDefault();
    event.stopPropagation();
    menu.open = false;
    menu.querySelector("summary").focus();
  }, true);
}
