// Progressive enhancement of the annotator pages besides the keys (keys.js); every page
// works without it.
// - Phone layout (max-width 640px, as in style.css): the context image is a strip that
//   opens and closes on tap (without this file the tap opens the whole image in a new
//   tab), and the modality definitions fold behind their summary.
// - Before a form is sent, every missing answer of every item is marked beside its
//   question, with one line at the top naming them all, instead of the browser's popup
//   about the first one only. The server says the same in the same places
//   (annotation/forms.py: MISSING_MESSAGES, FIELD_NAMES, errors_summary).
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var narrow = window.matchMedia("(max-width: 640px)");

  // --- the image strip and the folded definitions -------------------------------------
  Array.prototype.forEach.call(document.querySelectorAll("figure.context[data-strip]"), function (figure) {
    var link = figure.querySelector("a.context-image");
    if (!link) return;
    function describe() {
      if (narrow.matches) {
        link.setAttribute("role", "button");
        link.setAttribute("aria-expanded", figure.classList.contains("open") ? "true" : "false");
      } else {
        link.removeAttribute("role");
        link.removeAttribute("aria-expanded");
      }
    }
    link.addEventListener("click", function (event) {
      if (!narrow.matches) return;  // a wide screen shows the whole image; the link opens it large
      event.preventDefault();
      figure.classList.toggle("open");
      describe();
    });
    if (narrow.addEventListener) narrow.addEventListener("change", describe);
    describe();
  });
  if (narrow.matches) {
    Array.prototype.forEach.call(document.querySelectorAll("details[data-fold-narrow]"), function (details) {
      details.open = false;
    });
  }

  // --- every missing answer, on the page --------------------------------------------------
  var FIELD_ORDER = ["score", "modality", "decision"];
  var FIELD_NAMES = { score: "score", modality: "what helped you decide", decision: "keep or revise" };
  var form = document.getElementById("rating-form") || document.getElementById("check-form");
  var summary = document.getElementById("form-error");
  if (!form || !summary) return;
  form.noValidate = true;  // this script reports every missing answer itself

  function errorId(group) {  // "s12-q1" -> "s12-score-error", as the server names it
    return group.getAttribute("aria-labelledby").replace(/-q\d+$/, "") + "-" + group.getAttribute("data-field") + "-error";
  }
  function answered(group) {
    return !!group.querySelector("input[type=radio]:checked");
  }
  function clearError(group) {
    var old = document.getElementById(errorId(group));
    if (old) old.parentNode.removeChild(old);
    group.removeAttribute("aria-invalid");
    group.removeAttribute("aria-describedby");
    var item = group.closest("fieldset");
    if (item && !item.querySelector(".field-error")) item.classList.remove("has-error");
    if (!form.querySelector(".field-error")) summary.hidden = true;
  }
  function showError(group) {
    var id = errorId(group);
    var message = document.getElementById(id);
    if (!message) {
      message = document.createElement("p");
      message.className = "error field-error";
      message.id = id;
      group.parentNode.insertBefore(message, group);
    }
    message.textContent = group.getAttribute("data-missing");
    group.setAttribute("aria-invalid", "true");
    group.setAttribute("aria-describedby", id);
    group.closest("fieldset").classList.add("has-error");
  }

  form.addEventListener("submit", function (event) {
    // A button that sends the form without its answers (e.g. "Report and skip this item")
    // says so with formnovalidate: it needs no rating.
    if (event.submitter && event.submitter.formNoValidate) return;
    var parts = [], count = 0, first = null;
    Array.prototype.forEach.call(form.querySelectorAll("fieldset.scenario"), function (item) {
      var missing = [];
      Array.prototype.forEach.call(item.querySelectorAll("[role=radiogroup][data-field]"), function (group) {
        if (answered(group)) return;
        showError(group);
        missing.push(group.getAttribute("data-field"));
        if (!first) first = group.querySelector("input[type=radio]");
      });
      if (!missing.length) return;
      count += missing.length;
      var names = FIELD_ORDER.filter(function (f) { return missing.indexOf(f) >= 0; })
        .map(function (f) { return FIELD_NAMES[f]; });
      parts.push(item.getAttribute("data-label") + " (" + names.join(", ") + ")");
    });
    if (!count) return;
    event.preventDefault();
    summary.textContent = "Please complete " + count + " answer" + (count === 1 ? "" : "s") + ": " +
      parts.join(", ") + ". Each is marked below, beside its question.";
    summary.hidden = false;
    summary.scrollIntoView({ block: "start" });
    if (first) first.focus({ preventScroll: true });
  });

  form.addEventListener("change", function (event) {
    var group = event.target.closest && event.target.closest("[role=radiogroup][data-field]");
    if (group && answered(group)) clearError(group);
  });
})();
