// Badge fields: a keyboard-wedge reader types the code then Enter; Enter moves on to the PIN.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("input[data-then]"), function (field) {
    var next = document.getElementById(field.getAttribute("data-then"));
    if (!next) { return; }
    field.addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter") { return; }
      ev.preventDefault();
      if (field.value.trim()) { next.value = ""; next.focus(); }
    });
  });
  // on the login page, a badge scanned while nothing is focused still lands in the badge field
  var scan = document.querySelector("input[data-scan]");
  if (!scan) { return; }
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    var busy = t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "BUTTON");
    if (!busy && ev.key && ev.key.length === 1 && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
      scan.value = "";
      scan.focus();
    }
  });
})();
