// Small enhancements shared by every page. Everything still works as a plain form post.
(function () {
  "use strict";
  // Focus the main region after htmx swaps a whole page section, for screen readers.
  document.addEventListener("htmx:afterSwap", function (ev) {
    var el = ev.detail.target;
    if (el && el.id === "main") { el.focus(); }
  });
  // Confirmation dialogs declared in markup: <button data-confirm="Really?">
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-confirm]");
    if (btn && !window.confirm(btn.getAttribute("data-confirm"))) {
      ev.preventDefault();
      ev.stopImmediatePropagation();
    }
  }, true);
})();
