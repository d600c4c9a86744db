// Nothing typed or moved on a task page is lost to a quick reload or a closed tab.
// Every change is copied at once into this browser's localStorage; the server's autosave
// confirms it a moment later and the copy is dropped. Leaving the page (pagehide, or the tab
// hidden) sends what is unconfirmed with navigator.sendBeacon. On load, a copy that the server
// has not seen is put back into the form, the page says so, and it is saved again.
(function () {
  "use strict";

  var PREFIX = "rlhf-draft:";

  function form() { return document.getElementById("task-form"); }

  function key(f) { return PREFIX + f.getAttribute("data-assignment"); }

  function fields(f) {
    var out = [];
    new FormData(f).forEach(function (value, name) {
      if (name !== "csrf_token" && typeof value === "string") { out.push([name, value]); }
    });
    return out;
  }

  function read(f) {
    try { return JSON.parse(window.localStorage.getItem(key(f)) || "null"); } catch (e) { return null; }
  }

  function write(f, entry) {
    try { window.localStorage.setItem(key(f), JSON.stringify(entry)); } catch (e) { /* storage full or off */ }
  }

  function drop(f) {
    try { window.localStorage.removeItem(key(f)); } catch (e) { /* ignore */ }
  }

  function savedAt(f) { return f.getAttribute("data-saved-at") || ""; }

  // A change: keep an unsent copy (with the last server save this tab knows of).
  function remember() {
    var f = form();
    if (!f || !f.hasAttribute("data-assignment")) { return; }
    write(f, { t: Date.now(), base: savedAt(f), fields: fields(f) });
  }

  var inflight = null;

  document.addEventListener("htmx:beforeRequest", function (ev) {
    var f = form();
    if (f && isDraftRequest(ev)) { inflight = JSON.stringify(fields(f)); }
  });

  document.addEventListener("htmx:afterRequest", function (ev) {
    var f = form();
    if (!f || !isDraftRequest(ev) || !ev.detail.successful) { return; }
    var stamp = document.querySelector("#draft-status [data-saved-at]");
    if (stamp) { f.setAttribute("data-saved-at", stamp.getAttribute("data-saved-at")); }
    // Confirmed: drop the copy unless the form changed while the request was on its way.
    if (inflight === JSON.stringify(fields(f))) { drop(f); } else { remember(); }
  });

  function isDraftRequest(ev) {
    var elt = ev.detail && ev.detail.elt;
    return !!(elt && elt.hasAttribute && (elt.hasAttribute("data-draft") || elt.hasAttribute("data-rank-autosave")));
  }

  // Leaving: send what the server has not confirmed. The beacon carries the CSRF field.
  function flush() {
    var f = form();
    if (!f || !read(f)) { return; }
    var url = f.getAttribute("data-draft-url");
    if (url && navigator.sendBeacon) { navigator.sendBeacon(url, new FormData(f)); }
  }

  window.addEventListener("pagehide", flush);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { flush(); }
  });

  function apply(f, pairs) {
    var values = {};
    pairs.forEach(function (p) { (values[p[0]] = values[p[0]] || []).push(p[1]); });
    Array.prototype.forEach.call(f.elements, function (el) {
      if (!el.name || el.name === "csrf_token" || el.type === "hidden" || el.type === "submit") { return; }
      var sent = values[el.name] || [];
      if (el.type === "checkbox" || el.type === "radio") {
        el.checked = sent.indexOf(el.value) >= 0;
      } else {
        el.value = sent.length ? sent[0] : "";
      }
    });
  }

  // On load: put back a copy the server has not stored, and say so.
  function restore() {
    var f = form();
    if (!f || !f.hasAttribute("data-assignment")) { return; }
    var entry = read(f);
    if (!entry || !entry.fields) { return; }
    var now = JSON.stringify(fields(f));
    var server = savedAt(f);
    var newer = entry.base === server || (server === "" || entry.t > Number(server));
    if (JSON.stringify(entry.fields) === now || !newer) { drop(f); return; }
    apply(f, entry.fields);
    f.dispatchEvent(new CustomEvent("draft-restored", { bubbles: true }));
    var note = document.createElement("p");
    note.id = "draft-restored";
    note.className = "notice";
    note.setAttribute("role", "status");
    note.textContent = "Restored your unsaved changes from this browser (made at " +
      new Date(entry.t).toLocaleTimeString() + ", before the page was left); they are being saved now.";
    f.parentNode.insertBefore(note, f);
    f.querySelectorAll("[data-count-for], textarea").forEach(function (el) {
      el.dispatchEvent(new Event("input", { bubbles: true }));
    });
    document.body.dispatchEvent(new CustomEvent("rank-changed", { bubbles: true }));
    remember();
  }

  document.addEventListener("input", function (ev) { if (ev.target.form === form()) { remember(); } });
  document.addEventListener("change", function (ev) { if (ev.target.form === form()) { remember(); } });
  document.addEventListener("rank-changed", remember);
  // A submitted form needs no copy (a rejected one comes back with everything it sent).
  document.addEventListener("submit", function (ev) {
    var f = form();
    if (f && ev.target === f) { drop(f); }
  });
  document.addEventListener("DOMContentLoaded", restore);
})();
