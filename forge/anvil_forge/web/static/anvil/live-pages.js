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

  if (!window.EventSource) { startPolling(); return; }
  setState("connecting");
  connect();
  window.addEventListener("pagehide", function () { if (source) { source.close(); } });
})();
