// Scheduled releases: the "Publish at…" time is the viewer's wall-clock time; the FORGE keeps UTC.
// Fills the form's hidden tz_offset (minutes east of UTC at the chosen time, so daylight saving is right),
// names the viewer's time zone, and shows <time data-local-time> elements in it. No inline script (CSP).
(function () {
  "use strict";

  function offsetAt(value) {
    var when = value ? new Date(value) : new Date();
    if (isNaN(when.getTime())) when = new Date();
    return String(-when.getTimezoneOffset());
  }

  function fill(form) {
    var input = form.querySelector("input[name=at]");
    var hidden = form.querySelector("input[name=tz_offset]");
    if (input && hidden) hidden.value = offsetAt(input.value);
  }

  function localise(root) {
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
    root.querySelectorAll("[data-time-zone]").forEach(function (el) {
      el.textContent = zone || "UTC" + (offsetAt("") >= 0 ? "+" : "") + (offsetAt("") / 60);
    });
    root.querySelectorAll("time[data-local-time]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime()) || el.dataset.localised) return;
      el.title = el.textContent;
      el.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      el.dataset.localised = "1";
    });
    root.querySelectorAll("form[data-schedule-form]").forEach(fill);
  }

  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest("form[data-schedule-form]");
    if (form) fill(form);
  });
  document.addEventListener("submit", function (event) {
    if (event.target.matches && event.target.matches("form[data-schedule-form]")) fill(event.target);
  }, true);
  document.addEventListener("htmx:afterSwap", function (event) { localise(event.target); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localise(document); });
  } else {
    localise(document);
  }
})();
