// The page's one entry module: behaviour that needs no server round trip (the phone menu, the composer
// keys, copy buttons), the search palette (Ctrl+K), and on a conversation page the live conversation
// (chat/main.js).
import { addCopyButtons, wireCopyTargets } from "./copy.js";
import { showHit } from "./chat/hit.js";
import { startChat } from "./chat/main.js";
import { startSearchPalette } from "./search_palette.js";

document.querySelectorAll("[data-toggle-sidebar]").forEach((node) => {
  node.addEventListener("click", () => { document.body.classList.toggle("sidebar-open"); });
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

const thread = document.getElementById("thread");
if (thread && !showHit(thread)) { thread.scrollTop = thread.scrollHeight; }

startSearchPalette();
startChat();
