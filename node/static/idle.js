// A shared station locks itself once nobody has used it for a while (meta idle-after, ms):
// the next person logs in as themselves, and what the page showed is no longer on screen.
// Typing, tapping or scrolling without sending anything (a long list of sets being scanned)
// tells the node someone is there (/still-here), at most every 20 s; the tabs of the browser
// tell each other (localStorage), so a tab left open does not lock out the one in use. The
// node ends the session up to a minute after the page would lock, never before.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="idle-after"]');
  var after = meta ? parseInt(meta.getAttribute("content"), 10) : 0;
  if (!after || after <= 0) { return; }
  var KEY = "sterimesh.used";
  var timer = null;
  var told = performance.now();
  var shared = 0;
  var locking = false;
  function field(form, name, value) {
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  function lastUse() {  // the latest use in any tab of this browser (ms since the epoch)
    var stored = 0;
    try { stored = parseInt(window.localStorage.getItem(KEY) || "0", 10) || 0; } catch (e) { /* off */ }
    return Math.max(stored, shared);
  }
  function lock() {  // ends this browser's session, then the login page leads back here
    var left = lastUse() + after - Date.now();
    if (left > 1000) { wait(left); return; }  // another tab was used meanwhile
    if (locking) { return; }
    locking = true;
    var token = document.querySelector('meta[name="csrf-token"]');
    var form = document.createElement("form");
    form.method = "post";
    form.action = "/lock";
    field(form, "csrf", token ? token.getAttribute("content") : "");
    field(form, "next", window.location.pathname + window.location.search);
    document.body.appendChild(form);
    form.submit();
  }
  function wait(ms) {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(lock, ms);
  }
  var sharedAt = 0;
  function share() {
    sharedAt = shared;
    try { window.localStorage.setItem(KEY, String(shared)); } catch (e) { /* private mode */ }
  }
  function used() {
    shared = Date.now();
    wait(after);
    if (shared - sharedAt >= 1000) { share(); }  // the other tabs hear of it (storage event)
    if (performance.now() - told < 20000) { return; }
    told = performance.now();
    fetch("/still-here", { credentials: "same-origin", cache: "no-store" }).then(function (resp) {
      if (resp.status === 401) { lock(); }  // over already (logged out in another tab)
    }).catch(function () { /* the node is unreachable: the page locks on time anyway */ });
  }
  ["keydown", "pointerdown", "touchstart", "wheel", "input"].forEach(function (name) {
    document.addEventListener(name, used, { capture: true, passive: true });
  });
  window.addEventListener("storage", function (ev) {  // another tab of this browser was used
    if (ev.key === KEY) { wait(after); }
  });
  shared = Date.now();
  share();
  wait(after);
})();
