// Page behaviour that needs no server round trip: the phone menu, the composer keys, copy buttons.
(function () {
  "use strict";

  document.querySelectorAll("[data-toggle-sidebar]").forEach(function (el) {
    el.addEventListener("click", function () { document.body.classList.toggle("sidebar-open"); });
  });

  var composer = document.querySelector("[data-role=composer]");
  if (composer) {
    var box = composer.querySelector("textarea");
    var grow = function () { box.style.height = "auto"; box.style.height = Math.min(box.scrollHeight, window.innerHeight * 0.4) + "px"; };
    box.addEventListener("input", grow);
    box.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (box.value.trim()) { composer.requestSubmit(); }
      }
    });
    grow();
  }

  // Plain-http intranet installs have no navigator.clipboard: copy through a selected, off-screen textarea.
  var copyByHand = function (text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
    area.remove();
    return ok;
  };

  window.gptossAddCopyButtons = function (root) {
    root.querySelectorAll("pre.codeblock").forEach(function (pre) {
      if (pre.querySelector(".copy-btn")) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "btn copy-btn";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy code");
      button.addEventListener("click", function () {
        var text = pre.querySelector("code").innerText;
        var copied = function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 1500);
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(copied, function () { copyByHand(text) && copied(); });
        } else if (copyByHand(text)) {
          copied();
        }
      });
      pre.appendChild(button);
    });
  };
  window.gptossAddCopyButtons(document);

  var thread = document.getElementById("thread");
  if (thread) { thread.scrollTop = thread.scrollHeight; }
})();
