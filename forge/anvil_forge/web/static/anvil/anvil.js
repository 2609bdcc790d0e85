// Small progressive enhancements; every page works without them.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]") && target.form) {
      target.form.submit();
    }
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    var text = source.textContent.trim();
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected to copy by hand */ }
    }
  });
  // Forms that destroy something ask first (data-confirm: the question); links marked data-back go back.
  // Both were inline handlers once; the Content-Security-Policy allows no inline script.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-back]");
    if (link && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });
  // Leaving the editor with unsaved changes asks first (the browser's own dialog).
  // A page re-rendered from a refused or partial post (data-unsaved) starts dirty. Sample values are not content.
  var dirty = document.querySelector("form[data-guard-unsaved][data-unsaved]") !== null;
  document.addEventListener("input", function (event) {
    var form = event.target.form;
    var name = event.target.name || "";
    if (form && form.hasAttribute("data-guard-unsaved") && name.indexOf("sample-") !== 0) { dirty = true; }
  });
  document.addEventListener("submit", function () { dirty = false; });
  window.addEventListener("beforeunload", function (event) {
    if (dirty) { event.preventDefault(); event.returnValue = ""; }
  });

  // When an htmx request fails (the FORGE is restarting, the network dropped), say so; typed text stays put.
  var showProblem = function (message) {
    var box = document.getElementById("htmx-problem");
    if (!box) { return; }
    box.textContent = message;
    box.hidden = false;
  };
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var status = xhr ? xhr.status : "";
    // Signed out (401) or signed in again elsewhere (403 csrf): the FORGE says so; nothing was swapped, focus stays.
    var problem = xhr ? xhr.getResponseHeader("X-Anvil-Problem") : null;
    if (problem === "signed-out" || problem === "csrf") {
      showProblem(xhr.responseText);
      var link = document.createElement("a");
      link.href = "/login/?next=" + encodeURIComponent(window.location.pathname);
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = "Sign in again in a new tab";
      var box = document.getElementById("htmx-problem");
      if (box && problem === "signed-out") { box.appendChild(document.createTextNode(" ")); box.appendChild(link); }
      return;
    }
    showProblem("The FORGE answered with an error (" + status + "). Your text is still here; reload the page if it persists.");
  });
  document.addEventListener("htmx:sendError", function () {
    showProblem("The FORGE could not be reached. Your text is still here; the page will catch up when it answers.");
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var box = document.getElementById("htmx-problem");
    if (box && event.detail.successful) { box.hidden = true; }
  });
})();
