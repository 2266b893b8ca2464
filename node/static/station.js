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
// The last scan acted on is kept for the browser tab (sessionStorage, with the node run's
// name: its numbering starts again when the node does), so a scan made while the page
// changes is taken by the next page, not dropped. On the station page a set's scan opens it;
// on the load form it is added to the list of sets. Scans that name no set are said.
(function () {
  "use strict";
  var form = document.querySelector("[data-scanner-station]");
  if (!form || !window.fetch) { return; }
  var station = form.getAttribute("data-scanner-station");
  var zone = form.getAttribute("data-zone") || "";
  var list = form.tagName === "TEXTAREA" ? form : null;
  var note = document.getElementById("scan-note");
  var key = "sterimesh.scan." + station;
  var boot = null;
  var after = null;
  try {
    var stored = (window.sessionStorage.getItem(key) || "").split(":");
    if (stored.length === 2 && !isNaN(parseInt(stored[1], 10))) {
      boot = stored[0];
      after = parseInt(stored[1], 10);
    }
  } catch (e) { after = null; }
  function keep(seq) {
    after = seq;
    try { window.sessionStorage.setItem(key, boot + ":" + seq); } catch (e) { /* private mode */ }
  }
  function say(scan) {
    if (!note) { return; }
    var text;
    if (scan.kind === "error") {
      text = note.getAttribute("data-unreadable");
    } else if (scan.instrument) {
      text = note.getAttribute("data-instrument").replace("{code}", scan.instrument);
    } else {
      text = note.getAttribute("data-not-set").replace("{code}", scan.code || scan.text || "?");
    }
    note.textContent = text;
    note.hidden = false;
  }
  function add(set) {
    var codes = list.value.split(/[\s,;]+/).filter(function (c) { return c; });
    if (codes.indexOf(set) < 0) { codes.push(set); }
    list.value = codes.join("\n") + "\n";
    list.dispatchEvent(new Event("input", { bubbles: true }));  // someone is scanning (idle.js)
  }
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
      if (after === null || answer.boot !== boot) {
        // a page opened afresh, or a node started again: earlier scans were not for it
        boot = answer.boot;
        keep(answer.last);
      } else {
        for (var i = 0; i < answer.scans.length; i++) {
          var scan = answer.scans[i];
          keep(scan.seq);
          if (scan.set && list) {
            add(scan.set);
          } else if (scan.set) {
            go(scan.set);
            return;
          } else {
            say(scan);
          }
        }
      }
      window.setTimeout(poll, 50);
    }).catch(function () { window.setTimeout(poll, 3000); });
  }
  poll();
})();

// Forms that record: a second tap while the first is on its way records nothing twice
// (the buttons are disabled once the form's data is taken); on the load form, Enter in
// Machine or Program goes to the next field (a set scanned there must not record a load).
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("form.once"), function (form) {
    form.addEventListener("submit", function () {
      window.setTimeout(function () {
        Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = true; });
      }, 0);
    });
  });
  var order = ["machine", "program", "sets"];
  order.slice(0, 2).forEach(function (id, i) {
    var field = document.getElementById(id);
    if (!field || !document.getElementById("new-load")) { return; }
    field.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") {
        ev.preventDefault();
        var next = document.getElementById(order[i + 1]);
        if (next) { next.focus(); }
      }
    });
  });
})();

// The load form: the list as scanned, shown under it before anything is recorded (each set's
// name and status, and what recording would refuse or warn about), asked again a moment after
// a change. A session over (401) reloads the page, which then asks to log in.
(function () {
  "use strict";
  var list = document.getElementById("sets");
  var shown = document.getElementById("scanned");
  var form = document.getElementById("new-load");
  if (!list || !shown || !form || !window.fetch) { return; }
  var machine = document.getElementById("machine");
  var timer = null;
  var asked = 0;
  function check() {
    var mine = ++asked;
    var body = new URLSearchParams();
    ["csrf", "kind", "machine", "sets"].forEach(function (name) {
      var field = form.elements[name];
      body.append(name, field ? field.value : "");
    });
    fetch(shown.getAttribute("data-check"), {
      method: "POST", body: body, credentials: "same-origin", cache: "no-store", redirect: "manual"
    }).then(function (resp) {
      if (resp.status === 401) { window.location.reload(); return null; }
      if (resp.status !== 200) { throw new Error("check " + resp.status); }
      return resp.text();
    }).then(function (html) {
      if (html !== null && mine === asked) { shown.innerHTML = html; }  // the latest list only
    }).catch(function () {
      if (mine === asked) { shown.innerHTML = ""; }  // no answer: nothing shown is out of date
    });
  }
  function later() {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(check, 250);
  }
  list.addEventListener("input", later);
  if (machine) { machine.addEventListener("change", later); }
  // the washer/sterilizer tabs keep the list as it stands (machine and program are the kind's)
  Array.prototype.forEach.call(document.querySelectorAll("nav.zones a.zone-tab"), function (tab) {
    function keep() {
      var url = new URL(tab.href, window.location.href);
      var sets = list.value.trim();
      if (sets) { url.searchParams.set("sets", sets); } else { url.searchParams.delete("sets"); }
      tab.href = url.toString();
    }
    tab.addEventListener("click", keep);
    tab.addEventListener("auxclick", keep);  // a middle click opens it in a new tab
  });
  if (list.value.trim()) { check(); }
})();
