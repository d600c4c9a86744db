// Editing the best completion: "Start from its text" copies the chosen completion into the editor
// (only when the editor is empty or still holds an untouched copy), so nothing typed is overwritten.
(function () {
  "use strict";
  function rawText(letter) {
    var card = document.querySelector('.rank-card[data-letter="' + letter + '"] .completion-raw');
    return card ? card.textContent : "";
  }
  function copyChosen(force) {
    var select = document.querySelector("[data-edit-of]");
    var area = document.querySelector("[data-edit-text]");
    if (!select || !area || !select.value) { return; }
    var untouched = area.value === "" || area.value === area.dataset.copied;
    if (!untouched && !force) { return; }
    if (!untouched && !window.confirm("Replace your edit with completion " + select.value + "'s text?")) { return; }
    area.value = rawText(select.value);
    area.dataset.copied = area.value;
    area.dispatchEvent(new Event("input", { bubbles: true }));
    area.focus();
  }
  document.addEventListener("change", function (ev) {
    if (ev.target.matches && ev.target.matches("[data-edit-of]")) { copyChosen(false); }
  });
  document.addEventListener("click", function (ev) {
    if (ev.target.closest && ev.target.closest("[data-edit-copy]")) { copyChosen(true); }
  });
})();
