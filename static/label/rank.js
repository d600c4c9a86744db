// The ranking board: drag cards (by their handle) or use the keyboard to place them in tiers.
// The tier <select> inside each card is the source of truth that gets posted; with JavaScript
// off the labeler uses those selects directly.
(function () {
  "use strict";

  function board(root) { return root.querySelector("[data-rank-board]"); }

  function containers(b) { return Array.prototype.slice.call(b.querySelectorAll(".tier-cards")); }

  function container(b, tier) { return b.querySelector('.tier-cards[data-tier="' + tier + '"]'); }

  function tierOf(card) {
    var c = card.closest(".tier-cards");
    return c ? parseInt(c.getAttribute("data-tier"), 10) : 0;
  }

  function announce(b, text) {
    var live = document.getElementById("rank-live");
    if (!live) {
      live = document.createElement("p");
      live.id = "rank-live"; live.className = "visually-hidden";
      live.setAttribute("aria-live", "assertive");
      b.parentNode.insertBefore(live, b);
    }
    live.textContent = text;
  }

  // Copy each card's place into its select; count placed cards and comparison pairs.
  function sync(b) {
    var cards = Array.prototype.slice.call(b.querySelectorAll(".rank-card:not(.sortable-fallback)"));
    var sizes = {};
    var placed = 0;
    cards.forEach(function (card) {
      var t = tierOf(card);
      var sel = card.querySelector("[data-tier-select]");
      if (sel) { sel.value = t ? String(t) : ""; }
      card.setAttribute("data-tier-now", String(t));
      if (t) { placed += 1; sizes[t] = (sizes[t] || 0) + 1; }
    });
    var pairs = placed * (placed - 1) / 2;
    Object.keys(sizes).forEach(function (t) { pairs -= sizes[t] * (sizes[t] - 1) / 2; });
    var form = b.closest("form");
    var pc = form.querySelector("[data-pair-count]");
    if (pc) { pc.textContent = String(pairs); }
    var pl = form.querySelector("[data-placed-count]");
    if (pl) { pl.textContent = placed + " of " + cards.length + " ranked"; }
    containers(b).forEach(function (c) {
      c.classList.toggle("is-empty", c.children.length === 0);
    });
  }

  // Tell the autosave (an htmx trigger listening on body) that the ranking changed.
  function changed() {
    document.body.dispatchEvent(new CustomEvent("rank-changed", { bubbles: true }));
  }

  function moveTo(b, card, tier) {
    var k = containers(b).length - 1;
    if (tier < 0 || tier > k) { return; }
    container(b, tier).appendChild(card);
    sync(b);
    changed();
    card.focus();
    var letter = card.getAttribute("data-letter");
    announce(b, "Completion " + letter + (tier ? " moved to tier " + tier : " is not ranked"));
  }

  function onKey(ev) {
    var card = ev.target;
    if (!card.classList || !card.classList.contains("rank-card")) { return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var b = card.closest("[data-rank-board]");
    var t = tierOf(card);
    if (/^[0-9]$/.test(ev.key)) {
      ev.preventDefault();
      moveTo(b, card, parseInt(ev.key, 10));
    } else if (ev.key === "ArrowUp") {
      ev.preventDefault();
      moveTo(b, card, Math.max(0, t - 1));
    } else if (ev.key === "ArrowDown") {
      ev.preventDefault();
      moveTo(b, card, t + 1);
    } else if (ev.key === "e") {
      ev.preventDefault();
      toggle(card.querySelector("[data-expand]"));
    }
  }

  function toggle(btn) {
    if (!btn) { return; }
    var text = btn.closest(".rank-card").querySelector(".completion-text");
    var open = text.classList.toggle("clamped") === false;
    btn.setAttribute("aria-expanded", open ? "true" : "false");
    btn.textContent = open ? "Clamp" : "Expand";
  }

  function init(root) {
    var b = board(root);
    if (!b || b.getAttribute("data-ready")) { return; }
    b.setAttribute("data-ready", "1");
    b.classList.add("js-rank");
    // Cards whose text fits need no expand button.
    b.querySelectorAll(".rank-card").forEach(function (card) {
      var text = card.querySelector(".completion-text");
      var btn = card.querySelector("[data-expand]");
      if (btn && text.scrollHeight <= text.clientHeight + 2) { btn.hidden = true; }
    });
    if (window.Sortable) {
      containers(b).forEach(function (c) {
        window.Sortable.create(c, {
          group: "rank",
          handle: ".drag-handle",      // only the handle drags: touching the card scrolls the page
          draggable: ".rank-card",
          animation: 120,
          forceFallback: true,         // same pointer-driven drag for mouse and touch
          fallbackTolerance: 4,
          fallbackOnBody: true,        // the dragged clone lives outside the tiers
          emptyInsertThreshold: 24,
          ghostClass: "is-ghost",
          chosenClass: "is-chosen",
          onEnd: function (ev) {
            sync(b);
            changed();
            var t = tierOf(ev.item);
            announce(b, "Completion " + ev.item.getAttribute("data-letter") +
              (t ? " moved to tier " + t : " is not ranked"));
          }
        });
      });
    }
    sync(b);
  }

  // The reading view: each completion in full, in its own column, in the page's letter order.
  function openReader() {
    var dlg = document.getElementById("reader");
    var b = board(document);
    if (!dlg || !b || !dlg.showModal) { return; }
    var cols = dlg.querySelector("[data-reader-cols]");
    cols.textContent = "";
    var cards = Array.prototype.slice.call(b.querySelectorAll(".rank-card:not(.sortable-fallback)"));
    cards.sort(function (x, y) { return x.getAttribute("data-letter") < y.getAttribute("data-letter") ? -1 : 1; });
    cards.forEach(function (card) {
      var col = document.createElement("section");
      col.className = "reader-col";
      col.setAttribute("tabindex", "0");
      var h = document.createElement("h3");
      var t = tierOf(card);
      h.textContent = card.getAttribute("data-letter") + (t ? " · tier " + t : " · not ranked");
      col.appendChild(h);
      col.appendChild(card.querySelector(".completion-text").cloneNode(true));
      col.lastChild.classList.remove("clamped");
      cols.appendChild(col);
    });
    dlg.showModal();
    var first = cols.querySelector(".reader-col");
    if (first) { first.focus(); }
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "r" || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var tag = ev.target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && !/^(checkbox|radio)$/.test(ev.target.type))) {
      return;
    }
    if (document.getElementById("reader") && !document.getElementById("reader").open) {
      ev.preventDefault();
      openReader();
    }
  });
  document.addEventListener("click", function (ev) {
    if (ev.target.closest && ev.target.closest("[data-reader-open]")) { openReader(); }
    if (ev.target.closest && ev.target.closest("[data-reader-close]")) { document.getElementById("reader").close(); }
  });

  document.addEventListener("keydown", onKey);
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("[data-expand]");
    if (btn) { toggle(btn); }
  });
  // A select changed without JS-driven moves (e.g. via assistive tech): move the card to match.
  document.addEventListener("change", function (ev) {
    if (!ev.target.hasAttribute || !ev.target.hasAttribute("data-tier-select")) { return; }
    var card = ev.target.closest(".rank-card");
    var b = card.closest("[data-rank-board]");
    moveTo(b, card, parseInt(ev.target.value || "0", 10));
  });
  // A copy restored from this browser set the selects: put each card where its select says.
  document.addEventListener("draft-restored", function (ev) {
    var b = ev.target.querySelector && ev.target.querySelector("[data-rank-board]");
    if (!b) { return; }
    b.querySelectorAll(".rank-card").forEach(function (card) {
      var sel = card.querySelector("[data-tier-select]");
      var target = container(b, sel && sel.value ? parseInt(sel.value, 10) : 0);
      if (target) { target.appendChild(card); }
    });
    sync(b);
  });
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSettle", function () { init(document); });
})();
