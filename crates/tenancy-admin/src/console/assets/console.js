// The tenancy console's only script: follows the server-sent events of `data-events` and
// re-fetches the fragments that depend on them. An element with `data-src` and `data-on`
// ("tenant", "metrics") is refreshed on those events; with `data-tenant`, only on events of that
// tenant (or `*`: events were missed). Without this script every page still works; it only stops
// updating by itself.
"use strict";
(function () {
  var url = document.body.getAttribute("data-events");
  if (!url || !window.EventSource || !window.fetch) {
    return;
  }
  var busy = new WeakMap();
  function refresh(el) {
    if (busy.get(el)) {
      busy.set(el, "again");
      return;
    }
    busy.set(el, true);
    fetch(el.getAttribute("data-src"), {
      credentials: "same-origin",
      headers: { "x-console-fragment": "1" },
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        // The server rendered (and escaped) this HTML.
        el.innerHTML = html;
        el.removeAttribute("data-stale");
      })
      .catch(function () {
        el.setAttribute("data-stale", "true");
      })
      .then(function () {
        var again = busy.get(el) === "again";
        busy.delete(el);
        if (again) {
          refresh(el);
        }
      });
  }
  function each(kind, tenant) {
    var els = document.querySelectorAll("[data-src][data-on~='" + kind + "']");
    Array.prototype.forEach.call(els, function (el) {
      var only = el.getAttribute("data-tenant");
      if (!only || !tenant || tenant === "*" || tenant === only) {
        refresh(el);
      }
    });
  }
  var source = null;
  function connect() {
    source = new EventSource(url);
    source.addEventListener("tenant", function (event) {
      each("tenant", event.data);
    });
    source.addEventListener("metrics", function () {
      each("metrics", null);
    });
    source.addEventListener("open", function () {
      document.body.setAttribute("data-live", "connected");
    });
    source.addEventListener("error", function () {
      document.body.setAttribute("data-live", "reconnecting");
    });
  }
  // A page being left gives its connection back at once (a browser keeps few per server), and
  // one restored from the back-forward cache connects again and catches up.
  window.addEventListener("pagehide", function () {
    if (source) {
      source.close();
      source = null;
    }
  });
  window.addEventListener("pageshow", function (event) {
    if (!source) {
      connect();
      if (event.persisted) {
        each("tenant", "*");
      }
    }
  });
  connect();
})();
