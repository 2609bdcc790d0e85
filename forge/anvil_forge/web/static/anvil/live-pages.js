// Live pages: the FORGE pushes "this project changed" (Server-Sent Events, distribution/page_events.py) and
// the page asks htmx to refresh its live regions: elements with hx-trigger="anvil-live from:body".
// Without the push (signed out, a proxy that buffers, no EventSource), the regions refresh every 10 s instead.
(function () {
  "use strict";
  var marker = document.querySelector("[data-live-events]");
  if (!marker) { return; }
  var url = marker.getAttribute("data-live-events");
  var POLL_MS = 10000;
  var RETRY_PUSH_MS = 30000;
  var poller = null;
  var source = null;

  var setState = function (state) { marker.setAttribute("data-live-state", state); };
  var refresh = function (reason) {
    document.body.dispatchEvent(new CustomEvent("anvil-live", { detail: { reason: reason } }));
  };
  var startPolling = function () {
    setState("polling");
    if (poller === null) { poller = setInterval(function () { refresh("poll"); }, POLL_MS); }
  };
  var stopPolling = function () {
    if (poller !== null) { clearInterval(poller); poller = null; }
  };

  var connect = function () {
    source = new EventSource(url);
    // "ready": listening now; refresh once so nothing between the page's rendering and now is missed.
    source.addEventListener("ready", function () { stopPolling(); setState("pushed"); refresh("ready"); });
    source.addEventListener("changed", function () { refresh("changed"); });
    source.onerror = function () {
      startPolling();
      if (source.readyState === EventSource.CLOSED) {  // refused (signed out...): try the push again later
        source = null;
        setTimeout(connect, RETRY_PUSH_MS);
      }
    };
  };

  // Nothing typed is lost: a live region whose fields hold text the user typed (or has the focus in a field)
  // is not refreshed; it catches up once the focus leaves it with nothing typed, or on the next change.
  var holdsTypedText = function (region) {
    var active = document.activeElement;
    if (active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) { return true; }
    var fields = region.querySelectorAll("textarea, input:not([type=hidden]):not([type=checkbox]):not([type=radio])");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) { return true; }
    }
    return false;
  };
  var liveRegion = function (element) {
    var trigger = element && element.getAttribute && element.getAttribute("hx-trigger");
    return Boolean(trigger) && trigger.indexOf("anvil-live") !== -1;
  };
  // Checked before the request and again before its answer replaces the region (typing may have started between).
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var region = event.detail.elt;
    if (!liveRegion(region) || !holdsTypedText(region)) { return; }
    event.preventDefault();
    region.setAttribute("data-live-held", "");
  });
  // A refresh that brings the region back unchanged is not swapped in: replacing it would replace the button
  // under a click in progress (the refresh on connecting comes just as the page is first used). CSRF tokens are
  // masked anew in every answer, so they are left out of the comparison.
  var CSRF = /(name="csrfmiddlewaretoken" value=")[^"]*"/g;
  var sameAsNow = function (region, html) {
    if (!region.id || typeof DOMParser === "undefined") { return false; }
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
    return Boolean(fresh) && fresh.innerHTML.replace(CSRF, "$1\"") === region.innerHTML.replace(CSRF, "$1\"");
  };
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var region = event.detail.elt;
    if (!liveRegion(region)) { return; }
    if (holdsTypedText(region)) {
      event.detail.shouldSwap = false;
      region.setAttribute("data-live-held", "");
    } else if (sameAsNow(region, event.detail.serverResponse || "")) {
      event.detail.shouldSwap = false;
    }
  });
  document.body.addEventListener("focusout", function (event) {
    var region = event.target.closest && event.target.closest("[data-live-held]");
    if (!region) { return; }
    setTimeout(function () {  // after the focus has moved
      if (!holdsTypedText(region)) { region.removeAttribute("data-live-held"); refresh("held"); }
    }, 0);
  });

  if (!window.EventSource) { startPolling(); return; }
  setState("connecting");
  connect();
  window.addEventListener("pagehide", function () { if (source) { source.close(); } });
})();
