// Dashboard: re-fetch the body when the node says something changed (server-sent events),
// and every five minutes for what changes without an event (backups, peers).
(function () {
  "use strict";
  var dash = document.getElementById("dash");
  if (!dash || !window.EventSource) { return; }
  var pending = false;
  var busy = false;

  function editing() {
    var a = document.activeElement;
    return a && dash.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT");
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
