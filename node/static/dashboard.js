// Dashboard: re-fetch the body when the node says something changed (server-sent events),
// and every five minutes for what changes without an event (backups, peers).
(function () {
  "use strict";
  var dash = document.getElementById("dash");
  if (!dash || !window.EventSource) { return; }
  var pending = false;
  var busy = false;

  // someone is deciding on an anomaly: focus in one of the body's forms, or something typed
  // or chosen there not yet sent (a redraw would throw it away)
  function editing() {
    var a = document.activeElement;
    if (a && dash.contains(a) && a.closest && a.closest("form")) { return true; }
    var fields = dash.querySelectorAll(
      "form textarea, form input[type=text], form input:not([type]), form select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.tagName === "SELECT") {
        var initial = 0;  // the option marked selected in the page, else the first
        for (var j = 0; j < f.options.length; j++) {
          if (f.options[j].defaultSelected) { initial = j; }
        }
        if (f.selectedIndex !== initial) { return true; }
      } else if (f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function refresh() {
    if (busy) { pending = true; return; }
    if (editing()) { pending = true; setTimeout(refresh, 2000); return; }
    busy = true;
    pending = false;
    fetch(dash.getAttribute("data-body"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 200) { return r.text(); }
        if (r.redirected || r.status === 401 || r.status === 403) { window.location.reload(); }
        return null;
      })
      .then(function (html) {
        if (html !== null) { dash.innerHTML = html; mark(true); }
      })
      .catch(function () { mark(false); })
      .then(function () { busy = false; if (pending) { refresh(); } });
  }

  function mark(on) {
    var dot = document.getElementById("live-dot");
    if (dot) { dot.className = on ? "dot on" : "dot"; }
  }

  var source = new EventSource(dash.getAttribute("data-stream"));
  source.addEventListener("changed", refresh);
  source.onopen = function () { mark(true); refresh(); };
  source.onerror = function () { mark(false); };
  setInterval(refresh, 5 * 60 * 1000);
})();
