// The list's bulk action (templates/domains/list.html): which machines are ticked is kept here, by
// "host/uuid", because a live update replaces a row (and with it its checkbox) whenever the VM changes.
// After every change to the page the ticks are put back, and the "every machine" box follows the rows.
(function () {
  "use strict";

  const ticked = new Set();
  const rowBoxes = () => document.querySelectorAll('input[name="vm"][form="bulk-form"]');

  function followRows() {
    const all = document.querySelector("input[data-bulk-all]");
    if (!all) {
      return;
    }
    const boxes = Array.from(rowBoxes());
    all.checked = boxes.length > 0 && boxes.every((box) => box.checked);
    all.indeterminate = !all.checked && boxes.some((box) => box.checked);
  }

  function remember(box) {
    if (box.checked) {
      ticked.add(box.value);
    } else {
      ticked.delete(box.value);
    }
  }

  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement)) {
      return;
    }
    if (box.matches("input[data-bulk-all]")) {
      for (const row of rowBoxes()) {
        row.checked = box.checked;
        remember(row);
      }
    } else if (box.matches('input[name="vm"][form="bulk-form"]')) {
      remember(box);
      followRows();
    }
  });

  // Setting `checked` changes no attribute, so this observer never wakes itself.
  new MutationObserver(() => {
    for (const box of rowBoxes()) {
      box.checked = ticked.has(box.value);
    }
    followRows();
  }).observe(document.body, { childList: true, subtree: true });
})();
