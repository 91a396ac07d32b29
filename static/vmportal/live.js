// Live state: keeps the VM list and the VM page current over a websocket (domains/consumers.py).
//
// The page says what it shows with <div id="live" data-live-kind="list|domain" data-live-path="...">;
// the list's socket carries the page's own query string, so the server filters as the page does.
// The server pushes the same row and summary partials the pages render. The indicator in the top bar
// says whether the connection is up; a lost connection is retried with backoff, and once it is back
// the page re-fetches what it shows, since it may have missed changes meanwhile.
(function () {
  "use strict";

  const RETRY_MIN_MS = 500;
  const RETRY_MAX_MS = 5000;
  const SESSION_ENDED = 4401;  // the server's close code once this login session is over: no retry

  let socket = null;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = null;
  let everOpen = false;
  let refreshTimer = null;

  function hook() {
    return document.getElementById("live");
  }

  function indicate(state) {
    const indicator = document.getElementById("live-indicator");
    if (!indicator) return;
    indicator.hidden = false;
    indicator.dataset.live = state === "ended" ? "off" : state;
    indicator.textContent = state === "on" ? "live" : state === "connecting" ? "connecting…"
      : state === "ended" ? "logged out" : "offline";
    indicator.title = state === "on" ? "Changes appear as they happen."
      : state === "ended" ? "Your session has ended: log in again to see changes."
      : "Not connected: this page may be out of date. Reconnecting…";
  }

  // The socket is told what changed after the shown data was read: the list's results carry that time
  // (an htmx swap brings a new one), a VM page's hook its own.
  function socketUrl(element) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams(element.dataset.liveKind === "list" ? location.search : "");
    const stamp = document.querySelector("#results[data-live-since]") || element;
    if (stamp.dataset.liveSince) query.set("since", stamp.dataset.liveSince);
    const search = query.toString();
    return scheme + "//" + location.host + element.dataset.livePath + (search ? "?" + search : "");
  }

  function connect() {
    const element = hook();
    if (!element) return;
    clearTimeout(retryTimer);
    indicate("connecting");
    const current = new WebSocket(socketUrl(element));
    socket = current;
    current.onopen = function () {
      if (socket !== current) return;
      retryMs = RETRY_MIN_MS;
      indicate("on");
      if (everOpen) resync();
      everOpen = true;
    };
    current.onmessage = function (message) {
      if (socket === current) apply(JSON.parse(message.data));
    };
    current.onclose = function (event) {
      if (socket !== current) return;  // replaced on purpose
      socket = null;
      if (event.code === SESSION_ENDED) {  // logged out, expired, password changed, deactivated
        indicate("ended");
        return;
      }
      indicate("off");
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    };
  }

  function reconnect() {
    const old = socket;
    socket = null;
    if (old) old.close();
    everOpen = false;  // a fresh page state (the htmx swap that changed the query) needs no resync
    connect();
  }

  // --- Re-fetching what the page shows, after a reconnect or when told to. ---

  let resyncing = false;

  function resync() {
    const element = hook();
    if (!element || !window.htmx) return;
    if (element.dataset.liveKind === "list") {
      if (document.getElementById("results")) {
        resyncing = true;
        htmx.ajax("GET", location.pathname + location.search, {target: "#results", swap: "outerHTML"})
          .finally(function () { resyncing = false; });
      }
    } else if (document.getElementById("summary")) {
      htmx.ajax("GET", location.pathname, {target: "#summary", select: "#summary", swap: "outerHTML"});
    }
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(resync, 150);
  }

  // --- Messages. ---

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function sortKey(row) {
    return [row.dataset.host || "", row.dataset.name || ""];
  }

  function before(a, b) {  // (host, name) order, as the server sorts the list
    return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  }

  // An element with a request of its own in flight (an action's button) is not replaced under it: htmx
  // ignores the answer of a request whose element left the page. Its latest push waits for the answer.
  const waiting = new Map();

  function busy(element) {
    return element && (element.classList.contains("htmx-request") || element.querySelector(".htmx-request"));
  }

  function flushWaiting() {
    waiting.forEach(function (message, id) {
      if (busy(document.getElementById(id))) return;
      waiting.delete(id);
      apply(message);
    });
  }

  function placeRow(html, id) {
    const tbody = document.querySelector("#results table.domains tbody");
    if (!tbody) return;
    const existing = document.getElementById(id);
    if (busy(existing)) {
      waiting.set(id, {type: "row", id: id, html: html});
      return;
    }
    waiting.delete(id);
    const row = fragment(html);
    if (existing) {
      const menu = existing.querySelector("details.menu");
      if (menu && menu.open) {
        const fresh = row.querySelector("details.menu");
        if (fresh) fresh.open = true;
      }
      const [oldHost, oldName] = sortKey(existing);
      const [host, name] = sortKey(row);
      if (oldHost === host && oldName === name) {
        existing.replaceWith(row);
        htmx.process(row);
        return;
      }
      existing.remove();
    }
    tbody.querySelectorAll("tr:not([id])").forEach(function (placeholder) { placeholder.remove(); });
    const key = sortKey(row);
    const next = Array.from(tbody.querySelectorAll("tr[id^='domain-']")).find(function (other) {
      return before(key, sortKey(other));
    });
    tbody.insertBefore(row, next || null);
    htmx.process(row);
    recount();
  }

  function removeRow(id) {
    waiting.delete(id);
    const row = document.getElementById(id);
    if (!row || !row.closest("#results")) return;
    row.remove();
    recount();
  }

  function recount() {
    const count = document.querySelector("#results .count");
    if (!count) return;
    const rows = document.querySelectorAll("#results [id^='domain-']").length;
    count.textContent = rows + " virtual machine" + (rows === 1 ? "" : "s");
  }

  function hostBanner(message) {
    const results = document.getElementById("results");
    if (!results) return;
    results.querySelectorAll(".host-unreachable").forEach(function (banner) {
      if (banner.dataset.host === message.host) banner.remove();
    });
    if (message.reachable) return;
    const banner = document.createElement("p");
    banner.className = "message warning host-unreachable";
    banner.dataset.host = message.host;
    banner.textContent = "Host " + message.host + ": " + message.message;
    results.insertBefore(banner, results.firstChild);
  }

  function apply(message) {
    switch (message.type) {
      case "row": placeRow(message.html, message.id); break;
      case "remove": removeRow(message.id); break;
      case "host": hostBanner(message); break;
      case "refresh": refreshSoon(); break;
      case "summary": {
        const summary = document.getElementById("summary");
        if (!summary) break;
        if (busy(summary)) {
          waiting.set("summary", message);
          break;
        }
        waiting.delete("summary");
        const fresh = fragment(message.html);
        summary.replaceWith(fresh);
        htmx.process(fresh);
        if (message.details) {
          const panel = document.getElementById("agent-panel");
          if (panel) htmx.trigger(panel, "live-refresh");
        }
        break;
      }
      case "migration": {  // a migration job's progress: its own page, or the slot on the VM page (admins)
        let box = document.getElementById(message.id);
        if (!box) {
          const slot = document.getElementById("migration-slot");
          if (!slot) break;
          slot.replaceChildren();
          box = document.createElement("section");
          slot.appendChild(box);
        }
        if (busy(box)) {
          waiting.set(message.id, message);
          break;
        }
        waiting.delete(message.id);
        const fresh = fragment(message.html);
        box.replaceWith(fresh);
        htmx.process(fresh);
        break;
      }
      case "gone": {
        const summary = document.getElementById("summary");
        if (!summary) break;
        const notice = document.createElement("p");
        notice.id = "summary";
        notice.className = "message warning gone";
        notice.textContent = "This machine no longer exists, or you may no longer see it.";
        summary.replaceWith(notice);
        break;
      }
    }
  }

  document.addEventListener("DOMContentLoaded", connect);
  document.addEventListener("htmx:afterRequest", function () {
    setTimeout(flushWaiting, 50);  // after the answer has been swapped in and settled
  });
  // The filter form swaps in a list for another query: from then on, the old subscription's messages
  // are about the old filter and must not touch it. Drop it now; the pushed address names the new one.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const element = hook();
    const target = event.detail.target;
    if (!element || element.dataset.liveKind !== "list" || resyncing || !target || target.id !== "results") return;
    const old = socket;
    socket = null;
    if (old) old.close();
    clearTimeout(retryTimer);
    retryTimer = setTimeout(reconnect, 1000);  // in case no address is pushed (an error answer)
  });
  document.addEventListener("htmx:pushedIntoHistory", function () {
    const element = hook();
    if (element && element.dataset.liveKind === "list") reconnect();
  });
  window.addEventListener("popstate", function () {
    const element = hook();
    if (element && element.dataset.liveKind === "list") reconnect();
  });
})();
