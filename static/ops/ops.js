// Ops console: changing the preset refills the per-stage settings boxes with that preset's values.
(function () {
  "use strict";
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
})();
