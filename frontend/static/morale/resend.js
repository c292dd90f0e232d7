// The database-outage page (errors/503_database.html) carries the form that could not be
// stored; send it again after the delay the page names. Without JavaScript the button does it.
(function () {
  "use strict";
  var form = document.getElementById("resend-form");
  if (!form) return;
  var seconds = parseInt(form.getAttribute("data-resend-after"), 10) || 5;
  window.setTimeout(function () { form.submit(); }, seconds * 1000);
})();
