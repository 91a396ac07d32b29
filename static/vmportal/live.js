// Live state: the VM list and the VM page follow a websocket (domains/consumers.py) through htmx's own
// websocket extension: <div id="live" hx-ext="ws" ws-connect="...">. The server pushes out-of-band
// partials rendered from the templates; htmx connects, reconnects with backoff and swaps them. This file
// keeps only what htmx does not do:
// - the swaps of the "live" extension (<body hx-ext="live">): `upsert` replaces the element with the
//   pushed one's id, or gives it its place in the list's order (the table's data-sort column, then host
//   and name, as the server sorts) inside the target; `discard` removes it from the target if it is there;
//   `order` (a page of a longer list moved) puts the target's rows in the order given and drops the others;
//   `refetch` has the target fetch itself again (its live-refresh trigger); `usage` inserts nothing: it
//   hands the pushed element's data-sample (a VM's figures of the last interval, JSON) to the VM page's
//   charts as a "usage-sample" event on the target, whose detail is the parsed sample (usage.js); `cells`
//   replaces each pushed cell (a row's CPU and memory after a usage sample) where its id is shown.
//   An element with a request of its own in flight (an action's button) is not replaced under it: htmx
//   ignores the answer of a request whose element left the page. Its latest push waits for the answer.
//   The count of a list that fits on its page follows its rows, in the template's words; a longer list's
//   count and pager come from the server.
// - the socket's address: the list's own query string (the server filters as the page does), and `since`,
//   when the shown data was read (the list's results carry it, a VM page's hook its own);
// - the indicator in the top bar, in the words base.html hands it; once a lost connection is back the page
//   fetches what it shows again, since it may have missed changes meanwhile; the server says (`indicate`
//   swap) when its own side is catching up (its channel layer was away) and when it is live again;
// - a list swapped in for another query (the filter form, a column heading, the pager) subscribes anew;
//   close code 4401 (the session ended) stops reconnecting.
(function () {
  "use strict";

  const SESSION_ENDED = 4401;
  const RETRIED = [1006, 1011, 1012, 1013];  // the close codes after which the extension reconnects itself
  const RETRY_MIN_MS = 500;
  const RETRY_MAX_MS = 5000;

  let everOpen = null;  // the hook whose socket was open before: its next open fetches the page again
  let retries = 0;
  let stale = false;  // the filter changed: the old subscription's messages are about the old filter
  let resubscribeTimer = null;

  function hook() {
    return document.getElementById("live");
  }

  htmx.createWebSocket = function (url) {
    const address = new URL(url);
    const element = hook();
    if (element && element.dataset.liveKind === "list") address.search = location.search;
    const stamp = document.querySelector("#results[data-live-since]") || element;
    if (stamp && stamp.dataset.liveSince) address.searchParams.set("since", stamp.dataset.liveSince);
    return new WebSocket(address.href);
  };

  // --- The indicator, reconnecting, and fetching again. ---

  // The pill shows the state of the page's current hook's socket, kept here rather than in the pill: a swap of
  // the whole page (a boosted form, such as a snapshot action) brings the template's hidden pill and a new hook
  // whose socket htmx opens only once the swap settles. Drawn again after every swap, the pill says
  // "connecting…" meanwhile instead of vanishing; only a page without a hook has no pill.
  const socketStates = new WeakMap();  // hook element -> its socket's state

  function indicate(state, element) {
    const current = hook();
    if (element && element !== current) return;  // an old hook's socket, swapped away with its page
    if (current) socketStates.set(current, state);
    show();
  }

  function show() {
    const indicator = document.getElementById("live-indicator");
    if (!indicator) return;
    const current = hook();
    indicator.hidden = !current;
    if (!current) return;
    const state = socketStates.get(current) || "connecting";
    indicator.dataset.live = state === "ended" ? "off" : state;
    // The words are the template's (base.html's data-text-* and data-title-*), in the page's language.
    let name = state.replace(/(^|-)(.)/g, function (_m, _dash, c) { return c.toUpperCase(); });  // catching-up: CatchingUp
    if (!indicator.dataset["text" + name]) name = "Off";  // a state without words of its own: not connected
    indicator.textContent = indicator.dataset["text" + name];
    indicator.title = indicator.dataset["title" + name];
  }

  show();
  document.addEventListener("htmx:afterSwap", show);
  document.addEventListener("htmx:afterSettle", show);

  function refetch(element) {
    if (element) htmx.trigger(element, "live-refresh");
  }

  document.addEventListener("htmx:wsConnecting", function (event) {
    indicate("connecting", event.target);
  });
  document.addEventListener("htmx:wsOpen", function (event) {
    retries = 0;
    indicate("on", event.target);
    if (everOpen === event.target) {
      refetch(document.getElementById("results"));
      refetch(document.getElementById("summary"));
    }
    everOpen = event.target;
  });
  document.addEventListener("htmx:wsClose", function (event) {
    const code = event.detail.event.code;
    if (code === SESSION_ENDED) {  // logged out, expired, password changed, deactivated
      indicate("ended", event.target);
      return;
    }
    indicate("off", event.target);
    if (RETRIED.indexOf(code) >= 0) return;
    // The extension gives up after any other close (a normal one, as after a revoked grant): retry.
    const element = event.target;
    const wrapper = event.detail.socketWrapper;
    setTimeout(function () {
      if (element.isConnected) wrapper.reconnect();
    }, Math.min(RETRY_MIN_MS * 2 ** retries++, RETRY_MAX_MS));
  });
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    if (stale) event.preventDefault();
  });

  // The filter form swaps in a list for another query: drop the old subscription's messages from now on,
  // and once the new address is pushed, swap in a fresh hook (htmx closes the old socket, opens a new one).
  function resubscribe() {
    clearTimeout(resubscribeTimer);
    stale = false;
    const element = hook();
    if (element) htmx.swap(element, element.outerHTML, {swapStyle: "outerHTML"});
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    const from = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (event.detail.target.id !== "results" || !from || from.id === "results") return;  // its own refresh
    stale = true;
    clearTimeout(resubscribeTimer);
    resubscribeTimer = setTimeout(resubscribe, 1000);  // in case no address is pushed (an error answer)
  });
  document.addEventListener("htmx:pushedIntoHistory", function () {
    if (stale) resubscribe();
  });

  // --- The swaps. ---

  const waiting = new Map();  // element id -> [pushed element, target]

  function busy(element) {
    return element && (element.classList.contains("htmx-request") || element.querySelector(".htmx-request"));
  }

  const NUMERIC = ["cpu", "vcpus", "memoryUsed", "memory", "snapshots"];
  const YES_NO = ["autostart", "persistent", "managedSave"];

  function sortKey(element) {  // domains.filters.ListQuery.sort_key: the column's value, host, name
    const table = element.closest("table") || document.querySelector("#results table");
    const column = ((table && table.dataset.sort) || "host").replace(/_(.)/g, function (_m, c) { return c.toUpperCase(); });
    let value = element.dataset[column] || "";
    if (NUMERIC.indexOf(column) >= 0) value = Number(value);
    if (YES_NO.indexOf(column) >= 0) value = value === "true" ? 1 : 0;
    return [value, element.dataset.host || "", element.dataset.name || ""];
  }

  function before(a, b) {  // the list's order; descending reverses the whole key, as the server does
    const table = document.querySelector("#results table");
    const descending = table && table.dataset.descending !== undefined;
    const [x, y] = descending ? [b, a] : [a, b];
    for (let i = 0; i < x.length; i++) {
      if (x[i] < y[i]) return true;
      if (x[i] > y[i]) return false;
    }
    return false;
  }

  // A keyboard user's place survives a row's update: the same control of the new row takes the focus (its
  // action button, its tick box, else its menu's summary).
  function focusedIn(row) {
    const active = document.activeElement;
    if (!active || active === row || !row.contains(active)) return null;
    if (active.dataset.action) return '[data-action="' + active.dataset.action + '"]';
    if (active.name) return '[name="' + active.name + '"]';
    return "summary";
  }

  function refocus(row, selector) {
    if (!selector) return;
    const place = row.querySelector(selector) || row.querySelector("summary");
    if (place) setTimeout(function () { if (place.isConnected) place.focus(); });  // once the row is in place
  }

  function upsert(element, target) {
    const existing = document.getElementById(element.id);
    if (busy(existing)) {
      waiting.set(element.id, [element, target]);
      return null;
    }
    waiting.delete(element.id);
    if (existing) {
      const menu = existing.querySelector("details.menu");
      const fresh = element.querySelector("details.menu");
      if (menu && menu.open && fresh) fresh.open = true;
      const focused = focusedIn(existing);
      const [oldKey, key] = [sortKey(existing), sortKey(element)];
      if (!before(oldKey, key) && !before(key, oldKey)) {
        existing.replaceWith(element);
        refocus(element, focused);
        return element;
      }
      existing.remove();
      refocus(element, focused);  // once placed below
    }
    target.querySelectorAll(":scope > :not([id])").forEach(function (placeholder) { placeholder.remove(); });
    const key = sortKey(element);
    const next = Array.from(target.children).find(function (other) { return before(key, sortKey(other)); });
    target.insertBefore(element, next || null);
    return element;
  }

  function discard(element, target) {
    waiting.delete(element.id);
    const shown = document.getElementById(element.id);
    if (shown && target.contains(shown)) shown.remove();
  }

  function order(listed, target) {
    const rows = new Map(Array.from(target.children).map(function (row) { return [row.id, row]; }));
    const wanted = listed.map(function (element) { return rows.get(element.id); }).filter(Boolean);
    rows.forEach(function (row) { if (wanted.indexOf(row) < 0) row.remove(); });
    wanted.forEach(function (row) { target.appendChild(row); });
  }

  function recount() {
    const count = document.querySelector("#results .count");
    if (!count || document.querySelector("#list-footer .pager")) return;  // a longer list: the server counts
    const rows = document.querySelectorAll("#results tr[id^='domain-'], #results li[id^='domain-']").length;
    count.textContent = rows + " " + (rows === 1 ? count.dataset.one : count.dataset.many);
  }

  function flushWaiting() {
    waiting.forEach(function ([element, target], id) {
      if (!target.isConnected) {
        waiting.delete(id);
      } else if (!busy(document.getElementById(id)) && upsert(element, target)) {
        htmx.process(element);
        recount();
      }
    });
  }

  function cells(cell) {  // a row's cell with a new sample's figures, in place; a row no longer shown takes none
    const shown = document.getElementById(cell.id);
    if (shown) shown.replaceWith(cell);
  }

  function handOver(pushed, target) {  // pushed: the wrapper itself (it has no children)
    let sample;
    try {
      sample = JSON.parse(pushed.dataset.sample);
    } catch (error) {
      return;  // not a sample: nothing to draw
    }
    target.dispatchEvent(new CustomEvent("usage-sample", {detail: sample}));
  }

  document.addEventListener("htmx:afterRequest", function () {
    setTimeout(flushWaiting, 50);  // after the answer has been swapped in and settled
  });

  htmx.defineExtension("live", {
    handleSwap: function (style, target, fragment) {  // fragment: the pushed wrapper, its children the content
      const pushed = Array.from(fragment.children);
      let placed = [];
      if (style === "upsert") {
        placed = pushed.map(function (element) { return upsert(element, target); }).filter(Boolean);
      } else if (style === "discard") {
        pushed.forEach(function (element) { discard(element, target); });
      } else if (style === "order") {
        order(pushed, target);
      } else if (style === "refetch") {
        refetch(target);
      } else if (style === "cells") {
        pushed.forEach(function (cell) { cells(cell); });
      } else if (style === "usage") {
        handOver(fragment, target);
        return [];
      } else if (style === "indicate") {
        pushed.forEach(function (element) { indicate(element.dataset.live); });
        return [];
      } else {
        return false;
      }
      recount();
      return placed;  // htmx processes what was placed
    },
  });
})();
