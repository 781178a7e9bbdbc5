// smithers web page: local times, live updates over the event stream, one submit per form.
// No framework and no network beyond this server.
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var iso = t.getAttribute("datetime");
      var d = new Date(iso);
      if (!isNaN(d.getTime())) {
        t.textContent = d.toLocaleString();
        t.title = iso + " (UTC)";
      }
    });
  }

  // A second submit of the same form (a double click) is dropped here; the server also
  // answers an identical repeated decision without recording a second one.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.dataset.submitted === "yes") {
      e.preventDefault();
      return;
    }
    form.dataset.submitted = "yes";
  });

  function start() {
    localTimes(document);
    var live = document.querySelector("[data-live]");
    if (!live || !window.EventSource) return;
    var url = "/api/v1/events?after=" + encodeURIComponent(live.dataset.after || "0");
    if (live.dataset.run) url += "&run_id=" + encodeURIComponent(live.dataset.run);
    var source = new EventSource(url);
    var pending = null;
    var busy = false;

    function refresh() {
      pending = null;
      if (busy) { pending = setTimeout(refresh, 100); return; }
      busy = true;
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (!text) return;
          var doc = new DOMParser().parseFromString(text, "text/html");
          var fresh = doc.querySelector("[data-live]");
          if (!fresh) return;
          live.replaceChildren.apply(live, Array.from(fresh.childNodes));
          localTimes(live);
          // A gate decided elsewhere takes no second decision: drop its form.
          var status = document.getElementById("gate-status");
          if (status && status.textContent !== "requested") {
            document.querySelectorAll("form.decide, form.confirm").forEach(function (f) {
              f.remove();
            });
          }
          document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
        })
        .finally(function () { busy = false; });
    }

    function changed() {
      if (pending === null) pending = setTimeout(refresh, 150);
    }

    (document.body.dataset.events || "").split(" ").forEach(function (type) {
      if (type) source.addEventListener(type, changed);
    });
    source.addEventListener("open", function () { document.body.dataset.live = "open"; });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
