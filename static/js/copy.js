// Copy buttons on code blocks and for a new API key. Plain-http intranet installs have no navigator.clipboard: there the text is
// copied through a selected, off-screen textarea.

function copyByHand(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "sr-only";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch { ok = false; }
  area.remove();
  return ok;
}

/** Copy *text*; say so on *button* for a moment. */
export function copyText(text, button) {
  const label = button.textContent;
  const copied = () => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(copied, () => { if (copyByHand(text)) { copied(); } });
  } else if (copyByHand(text)) {
    copied();
  }
}

/** Give every code block under *root* a Copy button (once). */
export function addCopyButtons(root) {
  root.querySelectorAll("pre.codeblock").forEach((pre) => {
    if (pre.querySelector(".copy-btn")) { return; }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn copy-btn";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    button.addEventListener("click", () => { copyText(pre.querySelector("code").innerText, button); });
    pre.appendChild(button);
  });
}

/** Make every `<button data-copy="ID">` under *root* copy the text of the element ID (a new API key). */
export function wireCopyTargets(root) {
  root.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", () => {
      const target = document.getElementById(button.dataset.copy);
      if (target) { copyText(target.textContent.trim(), button); }
    });
  });
}
