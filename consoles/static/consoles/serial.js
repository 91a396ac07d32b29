// The serial console tab: asks the portal for a single-use ticket, then connects xterm.js to the
// portal's serial socket with it (binary frames: the serial line's bytes both ways). Every
// (re)connection asks for a new ticket; the ticket is never part of the page itself.
//
// A serial line carries no screen size: the terminal fits the tab (xterm's fit addon), and "Tell the
// machine this size" types `stty rows R cols C` for the user; nothing is typed without them asking.
import {CLOSE_ENDED, askTickets, consoleState, endedText, said, setState} from "./tickets.js";

const config = JSON.parse(document.getElementById("console-config").textContent);
const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();

// xterm.js and its addons are UMD scripts loaded before this module. The canvas renderer is loaded
// before open(): xterm's default DOM renderer writes <style> elements, which the CSP refuses.
const term = new window.Terminal({cursorBlink: true, scrollback: 5000, fontSize: 15});
const fit = new window.FitAddon.FitAddon();
term.loadAddon(new window.CanvasAddon.CanvasAddon());
term.loadAddon(fit);
term.onResize(({cols, rows}) => { $("term-size").textContent = `${cols}×${rows}`; });
term.open($("terminal"));
fit.fit();
$("term-size").textContent = `${term.cols}×${term.rows}`;
window.addEventListener("resize", () => fit.fit());

let socket = null;
let generation = 0;

function send(bytes) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(bytes);
}
term.onData((text) => send(encoder.encode(text)));
term.onBinary((text) => send(Uint8Array.from(text, (ch) => ch.charCodeAt(0))));

async function connect() {
  const mine = ++generation;
  if (socket) { socket.close(); socket = null; }
  const issued = await askTickets(config.ticketUrl);
  if (!issued || mine !== generation) return;
  const url = new URL(issued.url, `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`);
  url.searchParams.set("ticket", issued.tickets[0]);
  const ws = socket = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  let opened = false;
  ws.addEventListener("open", () => {
    if (mine !== generation) return;
    opened = true;
    setState("connected", said("Connected"));
    term.focus();
  });
  ws.addEventListener("message", (event) => {
    if (mine === generation) term.write(new Uint8Array(event.data));
  });
  ws.addEventListener("close", (event) => {
    if (mine !== generation) return;
    if (!opened) setState("failed", said("Refused"));
    else if (event.code === CLOSE_ENDED) setState("ended", endedText(event.reason, config.ended));
    else if (event.code === 1000) setState("ended", said("MachineClosed"));
    else setState("ended", said("ConnectionLost"));
  });
}

$("send-size").addEventListener("click", () => {
  send(encoder.encode(`stty rows ${term.rows} cols ${term.cols}\r`));
  term.focus();
});
$("fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen().then(() => fit.fit(), () => {});
});
document.addEventListener("fullscreenchange", () => fit.fit());
$("reconnect").addEventListener("click", connect);

// For tests and assistive use: what the terminal shows, as text (the canvas renderer has no DOM text).
function screenText() {
  const buffer = term.buffer.active;
  const lines = [];
  for (let y = 0; y < buffer.length; y++) lines.push(buffer.getLine(y).translateToString(true));
  return lines.join("\n");
}

window.vmportalSerial = {connect, screenText, state: consoleState};
connect();
