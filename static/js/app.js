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

  window.gptossAddCopyButtons = function (root) {
    root.querySelectorAll("pre.codeblock").forEach(function (pre) {
      if (pre.querySelector(".copy-btn")) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "btn copy-btn";
      button.textContent = "Copy";
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(pre.querySelector("code").innerText).then(function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 1500);
        });
      });
      pre.appendChild(button);
    });
  };
  window.gptossAddCopyButtons(document);

  var thread = document.getElementById("thread");
  if (thread) { thread.scrollTop = thread.scrollHeight; }
})();
