// Labeling pages: live length counts, draft-save status, skip confirmation and keyboard shortcuts.
// Everything here enhances plain forms; with JavaScript off the pages still work.
(function () {
  "use strict";

  function typing(el) {
    if (!el) { return false; }
    var tag = el.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable ||
      (tag === "INPUT" && !/^(checkbox|radio|button|submit)$/.test(el.type));
  }

  // The length counter warns as the limit nears and says plainly when the text is over it
  // (fields carry no maxlength, which would cut a paste without a word).
  function updateCount(counter) {
    var field = document.getElementById(counter.getAttribute("data-count-for"));
    if (!field) { return; }
    var max = parseInt(counter.getAttribute("data-max"), 10);
    var n = field.value.length;
    var over = n > max;
    counter.textContent = n + " / " + max + " characters" +
      (over ? ": " + (n - max) + " over the limit. Shorten it; it cannot be submitted like this." :
        n > 0.9 * max ? " (" + (max - n) + " left)" : "");
    counter.classList.toggle("error", over);
    counter.setAttribute("role", over ? "alert" : "status");
    field.setAttribute("aria-invalid", over ? "true" : "false");
  }

  // Refuse to send an over-long text: say why and keep every character where it is.
  document.addEventListener("submit", function (ev) {
    var field = ev.target.querySelector && ev.target.querySelector("textarea[data-max]");
    if (!field) { return; }
    var max = parseInt(field.getAttribute("data-max"), 10);
    if (field.value.length <= max) { return; }
    ev.preventDefault();
    ev.stopImmediatePropagation();
    var counter = document.querySelector('[data-count-for="' + field.id + '"]');
    if (counter) { updateCount(counter); }
    field.focus();
  }, true);

  function initCounts(root) {
    root.querySelectorAll("[data-count-for]").forEach(updateCount);
  }

  document.addEventListener("input", function (ev) {
    if (!ev.target.id) { return; }
    document.querySelectorAll('[data-count-for="' + ev.target.id + '"]').forEach(updateCount);
    if (ev.target.hasAttribute("data-draft")) {
      var status = document.getElementById("draft-status");
      if (status) { status.textContent = "Saving…"; }
    }
  });

  // A draft save that fails (connection lost, lease lost) says so; the next keystroke retries.
  function draftFailed(ev, message) {
    var elt = ev.detail && ev.detail.elt;
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-draft")) { return; }
    var status = document.getElementById("draft-status");
    if (status) {
      status.textContent = message;
      status.classList.add("error");
    }
  }
  document.addEventListener("htmx:sendError", function (ev) {
    draftFailed(ev, "Not saved: no connection. Keep this page open; it retries when you type.");
  });
  document.addEventListener("htmx:afterRequest", function (ev) {
    var elt = ev.detail && ev.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-draft") && ev.detail.successful) {
      var status = document.getElementById("draft-status");
      if (status) { status.classList.remove("error"); }
    }
  });

  // Skipping with text written asks first; confirming ticks "discard my draft".
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.hasAttribute || !form.hasAttribute("data-skip-form")) { return; }
    var draft = document.querySelector("[data-draft]");
    var box = form.querySelector("[data-discard]");
    var board = document.querySelector("[data-rank-board]");
    var ranked = board && board.querySelector(
      '.tier-cards:not([data-tier="0"]) .rank-card, input[type=radio]:checked, input[type=checkbox]:checked');
    var hasText = (draft && draft.value.trim().length > 0) || ranked || (box && !box.checked);
    if (!hasText) { return; }
    var n = draft ? draft.value.length : 0;
    var what = ranked && !draft ? "your ranking in progress" : "your draft" + (n ? " of " + n + " characters" : "");
    if (!window.confirm("Skip this task and discard " + what + "?")) {
      ev.preventDefault();
      ev.stopImmediatePropagation();
      return;
    }
    if (box) { box.checked = true; } else {
      var hidden = document.createElement("input");
      hidden.type = "hidden"; hidden.name = "discard_draft"; hidden.value = "1";
      form.appendChild(hidden);
    }
  }, true);

  function openSkip() {
    var box = document.getElementById("skip-box");
    if (!box) { return false; }
    box.open = true;
    var reason = document.getElementById("skip-reason");
    if (reason) { reason.focus(); }
    return true;
  }

  document.addEventListener("keydown", function (ev) {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") {
      var form = document.getElementById("task-form");
      if (form) {
        ev.preventDefault();
        if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
      }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) { return; }
    if (ev.target.closest && ev.target.closest(".rank-card") && /^[0-9e]$/.test(ev.key)) { return; }
    if (ev.key === "s" && openSkip()) {
      ev.preventDefault();
    } else if (ev.key === "g") {
      var g = document.getElementById("guidelines");
      if (g) { g.open = !g.open; ev.preventDefault(); }
    } else if (ev.key === "h") {
      var h = document.getElementById("earlier-turns");
      if (h) { h.open = !h.open; ev.preventDefault(); }
    } else if (ev.key === "n") {
      var next = document.querySelector("[data-next]:not([disabled])");
      if (next) { ev.preventDefault(); next.click(); }
    }
  });

  function init(root) {
    initCounts(root);
    var errors = root.querySelector("#form-errors");
    if (errors) { errors.focus(); }
  }
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSettle", function (ev) {
    if (ev.detail && ev.detail.elt && ev.detail.elt.querySelector) { init(ev.detail.elt); }
  });
})();
