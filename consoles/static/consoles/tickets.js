// What both console tabs (graphics and serial) share: their state label, and asking the portal for the
// single-use tickets of one connection (a POST with the CSRF token; a refusal is shown saying why).
const stateLabel = document.getElementById("console-state");

export function setState(state, text) {
  stateLabel.dataset.state = state;
  stateLabel.textContent = text;  // text, never HTML: reasons and names may come from the guest
}

export const consoleState = () => stateLabel.dataset.state;

// What the template gave the label to say (its data-text-<name>, in the reader's language), each {key} filled in
// from `values`: `said("ConnectionLost")` reads data-text-connection-lost.
export function said(name, values = {}) {
  return stateLabel.dataset[`text${name}`].replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));
}

// The close code of a console the portal ended (consoles/proxy.py CLOSE_ENDED): its reason says why, and the
// page's config (`ended`, from consoles.services.ENDED_EXPLAINED) has the known reasons in a sentence.
export const CLOSE_ENDED = 4001;

export function endedText(reason, explained) {
  return (explained && explained[reason]) || reason || said("PortalEnded");
}
function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function fetchTickets(ticketUrl) {
  const response = await fetch(ticketUrl, {
    method: "POST", headers: {"X-CSRFToken": csrfToken()}, credentials: "same-origin", cache: "no-store",
  });
  let body = {};
  try { body = await response.json(); } catch { /* not JSON: a login page or a proxy error */ }
  if (response.status === 404) throw new Error(said("NotAvailable"));
  if (response.redirected || response.status === 403) throw new Error(said("SessionEnded"));
  if (!response.ok) throw new Error(body.error || said("PortalAnswered", {status: response.status}));
  return body;
}

// The tickets, or null once the label says why there are none.
export async function askTickets(ticketUrl) {
  setState("connecting", said("Connecting"));
  try {
    return await fetchTickets(ticketUrl);
  } catch (error) {
    setState("failed", error.message);
    return null;
  }
}
