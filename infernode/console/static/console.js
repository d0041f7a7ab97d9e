// Live parts of the console: an element with data-live="URL" is refreshed from that URL
// (an HTML fragment) every data-every milliseconds while the page is visible.
(function () {
  "use strict";
  function refresh(el) {
    if (document.hidden) return;
    fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || r.status === 303 || r.status === 401) { window.location = "/login"; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) { if (html !== null) el.innerHTML = html; })
      .catch(function () { /* the next tick tries again */ });
  }
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var every = parseInt(el.dataset.every || "5000", 10);
    window.setInterval(function () { refresh(el); }, every);
  });
})();
