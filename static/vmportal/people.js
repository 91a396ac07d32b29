// The grant form's VM picker: a search box narrows the <select> it names (data-filters) to the matching
// machines, so an admin finds one among hundreds by typing part of its name or host.
"use strict";

document.addEventListener("input", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || !box.dataset.filters) return;
  const select = document.getElementById(box.dataset.filters);
  if (!(select instanceof HTMLSelectElement)) return;
  const wanted = box.value.trim().toLowerCase();
  let first = null;
  for (const option of select.options) {
    const shown = !option.value || option.text.toLowerCase().includes(wanted);
    option.hidden = !shown;
    if (shown && option.value && first === null) first = option;
  }
  // The selection follows the search, so what is submitted is always a machine still shown.
  if (select.selectedOptions.length && select.selectedOptions[0].hidden) select.value = "";
  if (wanted && first !== null && !select.value) select.value = first.value;
});
