// What both console tabs (graphics and serial) share: their state label, and asking the portal for the
// single-use tickets of one connection (a POST with the CSRF token; a refusal is shown saying why).
const stateLabel = document.getElementById("console-state");

export function setState(state, text) {
  stateLabel.dataset.state = state;
  stateLabel.textContent = text;  // text, never HTML: reasons and names may come from the guest
}

export const consoleState = () => stateLabel.dataset.state;

// The close code of a console the portal ended (consoles/proxy.py CLOSE_ENDED): its reason says why, and the
// page's config (`ended`, from consoles.services.ENDED_EXPLAINED) has the known reasons in a sentence.
export const CLOSE_ENDED = 4001;

export function endedText(reason, explained) {
  return (explained && explained[reason]) || reason || "The portal ended the console.";
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
  if (response.status === 404) throw new Error("This machine is not available to you.");
  if (response.redirected || response.status === 403) throw new Error("Your session has ended; log in again.");
  if (!response.ok) throw new Error(body.error || `The portal answered ${response.status}.`);
  return body;
}

// The tickets, or null once the label says why there are none.
export async function askTickets(ticketUrl) {
  setState("connecting", "Connecting…");
  try {
    return await fetchTickets(ticketUrl);
  } catch (error) {
    setState("failed", error.message);
    return null;
  }
}
