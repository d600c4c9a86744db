// Admin console enhancements; every form still works without this file.
(function () {
  "use strict";
  // Import: refuse an obviously wrong file type before uploading a large file.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.id !== "import-form") { return; }
    var input = form.querySelector("input[type=file]");
    var file = input && input.files && input.files[0];
    if (file && !/\.(jsonl|ndjson|json|csv)$/i.test(file.name)) {
      ev.preventDefault();
      input.setCustomValidity("Choose a .jsonl or .csv file.");
      input.reportValidity();
    }
  });
  document.addEventListener("change", function (ev) {
    if (ev.target.type === "file") { ev.target.setCustomValidity(""); }
  });
})();
