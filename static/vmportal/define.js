// The define form (templates/domains/new.html) shows only the fields the chosen boot source and graphics
// server use: each such field's wrapper names its chooser (data-shown-when) and the choices it serves
// (data-shown-for). Without this script every field shows, and the server ignores those that do not apply.
(function () {
  "use strict";

  function showChosen(form) {
    form.querySelectorAll("[data-shown-when]").forEach(function (wrapper) {
      const chooser = form.elements[wrapper.dataset.shownWhen];
      wrapper.hidden = !!chooser && wrapper.dataset.shownFor.split(" ").indexOf(chooser.value) < 0;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.querySelector("form.define-form");
    if (!form) return;
    showChosen(form);
    form.addEventListener("change", function () { showChosen(form); });
  });
})();
