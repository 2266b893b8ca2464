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

// Station with a serial scanner on this node: scans arrive through the node, not the keyboard.
(function () {
  "use strict";
  var form = document.querySelector("form.scan[data-scanner-station]");
  if (!form || !window.fetch) { return; }
  var station = form.getAttribute("data-scanner-station");
  var zone = form.getAttribute("data-zone") || "";
  var after = null;
  function go(set) {
    window.location.assign("/station?zone=" + encodeURIComponent(zone) + "&code=" + encodeURIComponent(set) +
      "&station=" + encodeURIComponent(station));
  }
  function poll() {
    var url = "/station/scans?station=" + encodeURIComponent(station) + "&wait=" + (after === null ? "0" : "20") +
      "&after=" + (after === null ? "0" : after);
    fetch(url, { credentials: "same-origin" }).then(function (resp) {
      if (!resp.ok) { throw new Error("scans " + resp.status); }
      return resp.json();
    }).then(function (answer) {
      var first = after === null;
      after = answer.last;
      if (!first) {
        for (var i = 0; i < answer.scans.length; i++) {
          if (answer.scans[i].set) { go(answer.scans[i].set); return; }
        }
      }
      window.setTimeout(poll, 50);
    }).catch(function () { window.setTimeout(poll, 3000); });
  }
  poll();
})();
