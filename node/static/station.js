// Station: keep the scan field focused so a keyboard-wedge scanner always types into it.
(function () {
  "use strict";
  var code = document.getElementById("code");
  if (!code) { return; }
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    var typing = t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
    if (!typing && ev.key && ev.key.length === 1 && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
      code.focus();
    }
  });
  // a double tap on a step button must not record the step twice
  Array.prototype.forEach.call(document.querySelectorAll("form.step"), function (form) {
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = true; });
    });
  });
})();
