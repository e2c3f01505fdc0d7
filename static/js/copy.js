// Copy buttons on code blocks. Plain-http intranet installs have no navigator.clipboard: there the text is
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

/** Give every code block under *root* a Copy button (once). */
export function addCopyButtons(root) {
  root.querySelectorAll("pre.codeblock").forEach((pre) => {
    if (pre.querySelector(".copy-btn")) { return; }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn copy-btn";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    button.addEventListener("click", () => {
      const text = pre.querySelector("code").innerText;
      const copied = () => {
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = "Copy"; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(copied, () => { if (copyByHand(text)) { copied(); } });
      } else if (copyByHand(text)) {
        copied();
      }
    });
    pre.appendChild(button);
  });
}
