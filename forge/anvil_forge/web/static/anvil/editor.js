// The prompt editor's enhancements; the page works without them.
// - Nothing typed is lost: a draft of the unsaved fields (template, description, metadata) is kept in this
//   browser's localStorage, per organisation/project/set/prompt with the revision it started from, and is
//   offered back after a reload, a crash or signing in again; a successful save drops it.
// - After signing in again in another tab, requests from this page use the new CSRF token (read from the
//   cookie, as Django documents for scripts), so the live check and Save work again without a reload.
// - Keys: Ctrl/Cmd+S saves, Ctrl/Cmd+Enter refreshes the preview, Tab indents inside the template
//   (two spaces) and Esc then Tab leaves it.
(function () {
  "use strict";
  var form = document.getElementById("editor-form");
  if (!form) { return; }
  var FIELDS = ["template", "description", "metadata"];
  var BASE_FIELDS = ["base_revision", "base_template", "base_description", "base_metadata"];
  var editable = form.hasAttribute("data-editable");
  var storageKey = "anvil:draft:" + form.getAttribute("data-draft-key");
  var revision = form.getAttribute("data-revision");
  var timer = null;

  var field = function (name) { return form.elements.namedItem(name); };
  var values = function () {
    var out = {};
    FIELDS.forEach(function (name) { var el = field(name); out[name] = el ? el.value : ""; });
    return out;
  };
  var same = function (a, b) {
    return FIELDS.every(function (name) { return (a[name] || "") === (b[name] || ""); });
  };
  var storage = (function () {
    try { var s = window.localStorage; s.setItem("anvil:probe", "1"); s.removeItem("anvil:probe"); return s; }
    catch (e) { return null; }
  })();
  var readDraft = function () {
    if (!storage) { return null; }
    try { var draft = JSON.parse(storage.getItem(storageKey) || "null"); return draft && draft.fields ? draft : null; }
    catch (e) { return null; }
  };
  var writeDraft = function (extra) {
    if (!storage) { return; }
    // The revision (and text) the typing started from travel with it, so a restored draft saved over someone
    // else's newer change meets the conflict view instead of replacing it.
    var draft = { fields: values(), base: field("base_revision").value, at: Date.now(), started: {} };
    BASE_FIELDS.forEach(function (name) { var el = field(name); if (el) { draft.started[name] = el.value; } });
    Object.keys(extra || {}).forEach(function (k) { draft[k] = extra[k]; });
    try { storage.setItem(storageKey, JSON.stringify(draft)); } catch (e) { /* full: nothing more to do */ }
  };
  var dropDraft = function () { if (storage) { storage.removeItem(storageKey); } };
  var clock = function (ms) {
    var d = new Date(ms);
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    return two(d.getHours()) + ":" + two(d.getMinutes());
  };

  // The text the page was rendered with (what is saved, unless this page shows a refused post).
  var pageText = values();
  var offer = document.getElementById("draft-offer");

  var restore = function (draft) {
    FIELDS.forEach(function (name) {
      var el = field(name);
      if (el && typeof draft.fields[name] === "string") { el.value = draft.fields[name]; }
    });
    BASE_FIELDS.forEach(function (name) {
      var el = field(name);
      if (el && draft.started && typeof draft.started[name] === "string") { el.value = draft.started[name]; }
    });
    form.setAttribute("data-unsaved", "");
    // Tells anvil.js's leave guard and the live check that the text changed.
    var template = field("template");
    if (template) { template.dispatchEvent(new Event("input", { bubbles: true })); }
    if (field("metadata") && field("metadata").value) {
      var details = field("metadata").closest("details");
      if (details) { details.open = true; }
    }
  };
  var button = function (label, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "small";
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  };
  var showOffer = function (draft) {
    if (!offer) { return; }
    offer.textContent = "";
    var p = document.createElement("p");
    var text = "Unsaved text from " + clock(draft.at) + " was kept in this browser.";
    if (draft.base && draft.base !== revision) {
      text += " It was typed on revision " + draft.base + "; the prompt is now at revision " + revision + ".";
    }
    p.textContent = text;
    offer.appendChild(p);
    var restoreButton = button("Restore", function () {
      restore(draft);
      offer.hidden = true;
      var t = field("template");
      if (t) { t.focus(); }
    });
    restoreButton.setAttribute("data-testid", "draft-restore");
    var discardButton = button("Discard", function () { dropDraft(); offer.hidden = true; });
    discardButton.classList.add("secondary", "outline");
    discardButton.setAttribute("data-testid", "draft-discard");
    offer.appendChild(restoreButton);
    offer.appendChild(discardButton);
    offer.hidden = false;
  };
  var showRestored = function (draft) {
    if (!offer) { return; }
    offer.textContent = "";
    var p = document.createElement("p");
    p.textContent = "Your text from " + clock(draft.at) + " did not reach the FORGE (the session had ended, or the "
      + "FORGE was away). It is back in the editor: save it now.";
    offer.appendChild(p);
    offer.hidden = false;
  };

  if (editable) {
    var draft = readDraft();
    if (form.hasAttribute("data-saved")) {
      dropDraft();  // the save went through
    } else if (form.hasAttribute("data-unsaved")) {
      writeDraft();  // a refused or partial post: the page holds the typed text; keep it
    } else if (draft && same(draft.fields, pageText)) {
      dropDraft();
    } else if (draft && draft.saving) {
      // Save was pressed and did not land (the session had ended): put the text back, marked unsaved.
      restore(draft);
      writeDraft();
      showRestored(draft);
    } else if (draft) {
      showOffer(draft);
    }

    // On the document: the metadata textarea sits outside the form element (form="editor-form").
    document.addEventListener("input", function (event) {
      if (event.target.form !== form || FIELDS.indexOf(event.target.name) < 0) { return; }
      clearTimeout(timer);
      timer = setTimeout(function () {
        if (same(values(), pageText) && !form.hasAttribute("data-unsaved")) { dropDraft(); } else { writeDraft(); }
      }, 200);
    });
  }

  // The CSRF token of this browser's current sign-in (it changes when the user signs in again elsewhere).
  var csrfCookie = function () {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : null;
  };
  var freshenToken = function (target) {
    var token = csrfCookie();
    if (!token || !target) { return; }
    var input = target.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) { input.value = token; }
  };
  document.addEventListener("htmx:configRequest", function (event) {
    var token = csrfCookie();
    if (!token) { return; }
    event.detail.headers["X-CSRFToken"] = token;
    if (event.detail.parameters && event.detail.parameters.csrfmiddlewaretoken !== undefined) {
      event.detail.parameters.csrfmiddlewaretoken = token;
    }
  });
  document.addEventListener("submit", function (event) {
    var target = event.target;
    freshenToken(target);
    if (target === form && editable) {
      clearTimeout(timer);
      writeDraft({ saving: true });  // dropped by the page after a successful save
    }
    if (target.id === "submit-form" && (form.hasAttribute("data-unsaved") || !same(values(), pageText))) {
      if (!window.confirm("Your latest changes to this prompt are not saved, so they would not be part of the review. "
                          + "Submit the set without them?")) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    }
  }, true);

  // Keys.
  var save = function () {
    var saveButton = document.getElementById("save-button");
    if (!saveButton) { return; }
    if (form.requestSubmit) { form.requestSubmit(saveButton); } else { saveButton.click(); }
  };
  var refreshPreview = function () {
    var live = document.getElementById("live");
    if (live && window.htmx) { window.htmx.trigger(live, "anvil:refresh"); }
  };
  document.addEventListener("keydown", function (event) {
    var mod = event.ctrlKey || event.metaKey;
    if (mod && !event.altKey && (event.key === "s" || event.key === "S")) {
      event.preventDefault();
      save();
    } else if (mod && event.key === "Enter") {
      event.preventDefault();
      refreshPreview();
    }
  });
  var template = field("template");
  var escaped = false;
  if (template && editable) {
    template.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { escaped = true; return; }
      if (event.key !== "Tab" || event.ctrlKey || event.metaKey || event.altKey || event.shiftKey) {
        if (event.key !== "Shift") { escaped = false; }
        return;
      }
      if (escaped) { escaped = false; return; }  // Esc then Tab: leave the field as usual
      event.preventDefault();
      var start = template.selectionStart, end = template.selectionEnd;
      template.setRangeText("  ", start, end, "end");
      template.dispatchEvent(new Event("input", { bubbles: true }));
    });
    template.addEventListener("blur", function () { escaped = false; });
  }

  // Jinja highlighting (Prism's django/jinja2 grammar, vendored): a highlighted copy of the text sits under
  // the real textarea, whose own text is transparent. The textarea stays the field that is typed in, posted
  // and read by assistive technology; without Prism it is a plain textarea.
  var Prism = window.Prism;
  if (template && Prism && Prism.languages && Prism.languages.django) {
    var wrap = document.createElement("div");
    wrap.className = "code-editor";
    var pre = document.createElement("pre");
    pre.className = "code-highlight";
    pre.setAttribute("aria-hidden", "true");
    var code = document.createElement("code");
    pre.appendChild(code);
    template.parentNode.insertBefore(wrap, template);
    wrap.appendChild(pre);
    wrap.appendChild(template);
    var computed = window.getComputedStyle(template);
    ["fontFamily", "fontSize", "fontWeight", "lineHeight", "letterSpacing", "wordSpacing", "tabSize",
     "paddingTop", "paddingRight", "paddingBottom", "paddingLeft",
     "borderTopWidth", "borderRightWidth", "borderBottomWidth", "borderLeftWidth", "borderRadius"]
      .forEach(function (name) { pre.style[name] = computed[name]; });
    pre.style.backgroundColor = computed.backgroundColor;
    template.classList.add("code-input");
    var minHeight = template.offsetHeight;
    var render = function () {
      code.innerHTML = Prism.highlight(template.value, Prism.languages.django, "django") + "\n";
      template.style.height = "auto";
      template.style.height = Math.max(minHeight, template.scrollHeight + 2) + "px";
    };
    template.addEventListener("input", render);
    window.addEventListener("resize", render);
    template.addEventListener("scroll", function () { pre.scrollTop = template.scrollTop; });
    render();
  }
})();
