// Menus and disclosures for keyboard and pointer alike:
// - a disclosure button (button.disclosure[aria-controls][aria-expanded]: the top bar's "Menu", the list's "Filters")
//   shows or hides what it controls; vmportal.css hides it while aria-expanded is "false", on narrow screens only;
// - a row's action menu (<details class="menu dropdown">, templates/domains/_actions.html) opens with Enter or
//   Space on its summary (the browser's own), Tab walks its actions; opening one closes the others, and Escape
//   or a click outside closes it, Escape returning the focus to its summary;
// - after an action answered from a row's menu the row is swapped: the focus goes to the new row's summary
//   rather than being lost to the page's start.
// Every listener is on the document: a boosted form or a live push replaces the elements themselves.
(function () {
  "use strict";

  const DROPDOWN = "details.menu.dropdown";
  const DISCLOSURE = "button.disclosure[aria-controls][aria-expanded]";

  function disclosures() {
    return document.querySelectorAll(DISCLOSURE);
  }

  function expand(button, open) {
    button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function closeMenus(except) {
    document.querySelectorAll(DROPDOWN + "[open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest(DISCLOSURE);
    if (button) expand(button, button.getAttribute("aria-expanded") !== "true");
    closeMenus(event.target.closest(DROPDOWN));
  });

  // "toggle" does not bubble: listened to on its way down.
  document.addEventListener("toggle", function (event) {
    if (event.target.matches && event.target.matches(DROPDOWN) && event.target.open) closeMenus(event.target);
  }, true);

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const menu = event.target.closest && event.target.closest(DROPDOWN + "[open]");
    if (menu) {
      menu.open = false;
      menu.querySelector("summary").focus();
      return;
    }
    disclosures().forEach(function (button) {
      const controlled = document.getElementById(button.getAttribute("aria-controls"));
      if (button.getAttribute("aria-expanded") === "true" && controlled
          && (controlled.contains(event.target) || button === event.target)) {
        expand(button, false);
        button.focus();
      }
    });
  });

  let answeredRow = null;  // the id of the row whose menu sent the request in flight
  document.addEventListener("htmx:beforeRequest", function (event) {
    const menu = event.target.closest && event.target.closest(DROPDOWN);
    const row = menu && menu.closest("tr[id]");
    answeredRow = row && row.contains(document.activeElement) ? row.id : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!answeredRow || (document.activeElement && document.activeElement !== document.body)) return;
    const summary = document.querySelector("#" + CSS.escape(answeredRow) + " " + DROPDOWN + " summary");
    answeredRow = null;
    if (summary) summary.focus();
  });
})();
