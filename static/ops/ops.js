// Ops console enhancements; every page works without them.
(function () {
  "use strict";
  // Changing the preset refills the per-stage settings boxes with that preset's values.
  document.addEventListener("change", function (ev) {
    var select = ev.target;
    if (!select || select.id !== "preset" || !select.dataset.presets) { return; }
    var presets;
    try { presets = JSON.parse(select.dataset.presets); } catch (e) { return; }
    var chosen = presets[select.value] || {};
    document.querySelectorAll("textarea[data-stage]").forEach(function (area) {
      area.value = JSON.stringify(chosen[area.dataset.stage] || {}, null, 2);
    });
  });

  // Changing the method ticks its stages (and unticks the others'); the server ignores the others anyway.
  document.addEventListener("change", function (ev) {
    var select = ev.target;
    if (!select || select.id !== "method" || !select.dataset.methods) { return; }
    var methods;
    try { methods = JSON.parse(select.dataset.methods); } catch (e) { return; }
    var chosen = methods[select.value] || [];
    document.querySelectorAll("input[name=stages]").forEach(function (box) {
      box.checked = chosen.indexOf(box.value) >= 0;
    });
  });

  // The log tail follows new lines unless the reader has scrolled up to read older ones.
  var follow = true;
  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 8; }
  function scrollLogs() {
    if (!follow) { return; }
    document.querySelectorAll("pre.log").forEach(function (el) { el.scrollTop = el.scrollHeight; });
  }
  document.addEventListener("scroll", function (ev) {
    var el = ev.target;
    if (el && el.classList && el.classList.contains("log")) { follow = atBottom(el); }
  }, true);
  document.addEventListener("htmx:afterSettle", scrollLogs);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", scrollLogs);
  } else {
    scrollLogs();
  }
})();
