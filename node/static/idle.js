// A shared station locks itself once nobody has used it for a while (meta idle-after, ms):
// the next person logs in as themselves, and what the page showed is no longer on screen.
// Typing or tapping without sending anything (a long list of sets being scanned) tells the
// node someone is there (/still-here), at most every 20 s; the node ends the session a
// minute after the page would lock, never before.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="idle-after"]');
  var after = meta ? parseInt(meta.getAttribute("content"), 10) : 0;
  if (!after || after <= 0) { return; }
  var timer = null;
  var told = Date.now();
  function field(form, name, value) {
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  function lock() {  // ends this browser's session, then the login page leads back here
    var token = document.querySelector('meta[name="csrf-token"]');
    var form = document.createElement("form");
    form.method = "post";
    form.action = "/lock";
    field(form, "csrf", token ? token.getAttribute("content") : "");
    field(form, "next", window.location.pathname + window.location.search);
    document.body.appendChild(form);
    form.submit();
  }
  function used() {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(lock, after);
    if (Date.now() - told >= 20000) {
      told = Date.now();
      fetch("/still-here", { credentials: "same-origin", cache: "no-store" }).then(function (resp) {
        if (resp.status === 401) { lock(); }  // over already (another tab logged out)
      }).catch(function () { /* the node is unreachable: the page locks on time anyway */ });
    }
  }
  ["keydown", "pointerdown", "touchstart", "input"].forEach(function (name) {
    document.addEventListener(name, used, { capture: true, passive: true });
  });
  used();
})();
