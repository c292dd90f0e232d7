// Keyboard shortcuts for the rating and grounding-check pages. The pages work without
// this file; it only saves clicks: 1-5 score, t/i/b modality, Enter submit.
(function () {
  "use strict";
  var form = document.getElementById("rating-form") || document.getElementById("check-form");
  if (!form) return;
  var items = Array.prototype.slice.call(form.querySelectorAll("fieldset.scenario"));
  if (!items.length) return;
  var modalityKeys = { t: "text", i: "image", b: "both" };

  function answered(item, prefix) {
    return !!item.querySelector('input[name^="' + prefix + '"]:checked');
  }
  function isDone(item) {
    var needsScore = !!item.querySelector('input[name^="score-"]');
    return (!needsScore || answered(item, "score-")) && answered(item, "modality-");
  }
  function current() {
    var focused = document.activeElement && document.activeElement.closest("fieldset.scenario");
    if (focused) return focused;
    return items.filter(function (it) { return !isDone(it); })[0] || items[items.length - 1];
  }
  function highlight() {
    var cur = current();
    items.forEach(function (it) { it.classList.toggle("current", it === cur); });
  }
  function choose(item, name, value) {
    var input = item.querySelector('input[name^="' + name + '"][value="' + value + '"]');
    if (!input) return false;
    input.checked = true;
    input.focus();
    input.dispatchEvent(new Event("change", { bubbles: true }));
    if (isDone(item)) {
      var next = items[items.indexOf(item) + 1];
      var target = next && next.querySelector("input");
      if (target) target.focus();
    }
    return true;
  }

  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (tag === "input" && event.target.type !== "radio" && event.target.type !== "checkbox") return;
    var item = current();
    var key = event.key.toLowerCase();
    var handled = false;
    if (/^[1-5]$/.test(key)) handled = choose(item, "score-", key);
    else if (modalityKeys[key]) handled = choose(item, "modality-", modalityKeys[key]);
    else if (key === "enter") { event.preventDefault(); form.requestSubmit(); return; }
    if (handled) { event.preventDefault(); highlight(); }
  });
  form.addEventListener("focusin", highlight);
  highlight();
})();
