// The page's one entry module: behaviour every page has (the phone menu, the composer keys, copy buttons,
// the notification switch and its profile setting), the search palette (Ctrl+K), the conversation lists
// (sidebar.js: infinite scroll, row menus, live updates), and on a conversation page
// the live conversation (chat/main.js).
import { wireNotifySwitch, wireProfileNotifications } from "./attention.js";
import { addCopyButtons, wireCopyTargets } from "./copy.js";
import { showHit } from "./chat/hit.js";
import { startChat } from "./chat/main.js";
import { startSearchPalette } from "./search_palette.js";
import { startSidebar } from "./sidebar.js";

// The phone menu: opening it moves the focus into it, Escape or its ✕ closes it and gives the focus back.
const menuButton = document.querySelector(".topbar [data-toggle-sidebar]");
function showSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  if (menuButton) { menuButton.setAttribute("aria-expanded", open ? "true" : "false"); }
  const target = open ? document.querySelector(".sidebar [data-toggle-sidebar]") : menuButton;
  if (target && target.offsetParent !== null) { target.focus(); }
}
document.querySelectorAll("[data-toggle-sidebar]").forEach((node) => {
  node.addEventListener("click", () => showSidebar(!document.body.classList.contains("sidebar-open")));
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) {
    event.preventDefault();
    showSidebar(false);
  }
});

const composer = document.querySelector("[data-role=composer]");
if (composer) {
  const box = composer.querySelector("textarea");
  const grow = () => {
    box.style.height = "auto";
    box.style.height = Math.min(box.scrollHeight, window.innerHeight * 0.4) + "px";
  };
  box.addEventListener("input", grow);
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (box.value.trim()) { composer.requestSubmit(); }
    }
  });
  grow();
}

addCopyButtons(document);
wireCopyTargets(document);
wireNotifySwitch(document);
wireProfileNotifications(document);

const thread = document.getElementById("thread");
if (thread && !showHit(thread)) { thread.scrollTop = thread.scrollHeight; }

startSearchPalette();
startSidebar();
startChat();
