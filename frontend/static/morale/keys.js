// Progressive enhancement for the rating, practice and grounding-check pages. The pages
// work without this file; it only saves clicks: 1-5 score, t/i/b modality, Enter submit.
// On the grounding check: k keeps the score, a digit revises it to that score (the same
// digit as the first score keeps it), and choosing a new score selects "Revise it to".
// The key hints are shown by style.css only where a fine pointer (a mouse) is used.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var form = document.getElementById("rating-form") || document.getElementById("check-form");
  if (!form) return;
  var items = Array.prototype.slice.call(form.querySelectorAll("fieldset.scenario"));
  if (!items.length) return;
  var modalityKeys = { t: "text", i: "image", b: "both" };

  function checkedIn(item, prefix) {
    return !!item.querySelector('input[name^="' + prefix + '"]:checked');
  }
  function isDone(item) {
    var needsScore = !!item.querySelector('input[name^="score-"]');
    var needsDecision = !!item.querySelector('input[name^="decision-"]');
    return (!needsScore || checkedIn(item, "score-")) &&
      (!needsDecision || checkedIn(item, "decision-")) &&
      checkedIn(item, "modality-");
  }
  function current() {
    var focused = document.activeElement && document.activeElement.closest &&
      document.activeElement.closest("fieldset.scenario");
    if (focused && form.contains(focused)) return focused;
    return items.filter(function (it) { return !isDone(it); })[0] || items[items.length - 1];
  }
  function highlight() {
    var cur = current();
    items.forEach(function (it) { it.classList.toggle("current", it === cur); });
  }
  function changed(input) {
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }
  function moveOnIfDone(item) {
    if (!isDone(item)) return;
    var next = items[items.indexOf(item) + 1];
    var target = next && next.querySelector("input:not([type=hidden])");
    if (target) target.focus();
  }
  function choose(item, name, value) {
    var input = item.querySelector('input[name^="' + name + '"][value="' + value + '"]');
    if (!input) return false;
    input.checked = true;
    input.focus();
    changed(input);
    moveOnIfDone(item);
    return true;
  }
  function reviseTo(item, value) {  // grounding check: a digit picks the new score
    var select = item.querySelector('select[name^="score-"]');
    var revise = item.querySelector('input[name^="decision-"][value="revise"]');
    if (!select || !revise) return false;
    if (value === item.getAttribute("data-score")) return choose(item, "decision-", "keep");
    select.value = value;
    revise.checked = true;
    revise.focus();
    changed(revise);
    moveOnIfDone(item);
    return true;
  }

  // Shortcuts act only where typing means nothing else: on the page itself or on a
  // choice inside the form (never in a text field, a menu, a link or another button).
  function shortcutTarget(el) {
    if (!el || el === document.body || el === document.documentElement || el.id === "main") return true;
    return form.contains(el) && el.tagName === "INPUT" && (el.type === "radio" || el.type === "checkbox");
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (!shortcutTarget(event.target)) return;
    var item = current();
    var key = (event.key || "").toLowerCase();
    var handled = false;
    if (/^[1-5]$/.test(key)) {
      handled = choose(item, "score-", key) || reviseTo(item, key);
    } else if (modalityKeys[key]) {
      handled = choose(item, "modality-", modalityKeys[key]);
    } else if (key === "k") {
      handled = choose(item, "decision-", "keep");
    } else if (key === "enter") {
      event.preventDefault();
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
      return;
    }
    if (handled) { event.preventDefault(); highlight(); }
  });

  // On the grounding check, changing the score menu means "revise it", and "keep" puts
  // the menu back to the first score (a kept score never travels with another number).
  form.addEventListener("change", function (event) {
    var el = event.target;
    var item = el.closest && el.closest("fieldset.scenario");
    if (item && el.tagName === "SELECT" && /^score-/.test(el.name)) {
      var revise = item.querySelector('input[name^="decision-"][value="revise"]');
      if (revise) revise.checked = true;
    } else if (item && /^decision-/.test(el.name) && el.value === "keep") {
      var select = item.querySelector('select[name^="score-"]');
      if (select) select.value = item.getAttribute("data-score");
    }
    highlight();
  });
  form.addEventListener("focusin", highlight);
  highlight();
})();
