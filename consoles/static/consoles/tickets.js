// Asks the portal for the single-use tickets of one console connection (graphics or serial): a POST
// with the CSRF token, whose refusals become errors saying why, for the console tab to show.
function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function fetchTickets(ticketUrl) {
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
