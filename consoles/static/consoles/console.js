// The console tab: asks the portal for single-use tickets, then connects noVNC (VNC) or
// spice-html5 (SPICE) to the console proxy with them. Every (re)connection asks for new tickets;
// no password and no ticket is ever part of the page itself.
import RFB from "../novnc/core/rfb.js";
import KeyTable from "../novnc/core/input/keysym.js";
import XtScancode from "../novnc/core/input/xtscancodes.js";
import {CLOSE_ENDED, askTickets, consoleState, endedText, said, setState} from "./tickets.js";

const config = JSON.parse(document.getElementById("console-config").textContent);
const screen = document.getElementById("screen");
const stateLabel = document.getElementById("console-state");
const $ = (id) => document.getElementById(id);

// VMPORTAL_CONSOLE_URL: "/path" on this origin, ":port/path" on this host, or a full ws(s):// URL.
function socketUrl(base, ticket) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let url;
  if (/^wss?:\/\//.test(base)) {
    url = new URL(base);
  } else if (base.startsWith(":")) {
    const slash = base.indexOf("/");
    const port = slash < 0 ? base.slice(1) : base.slice(1, slash);
    url = new URL(`${scheme}//${location.hostname}:${port}${slash < 0 ? "/" : base.slice(slash)}`);
  } else {
    url = new URL(base, `${scheme}//${location.host}`);
  }
  url.searchParams.set("token", ticket);
  return url.toString();
}

// --- keys: one table for pasted text and combinations, as KeyboardEvent.code + keysym ---------------
const SHIFTED = {"~": "`", "!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8",
  "(": "9", ")": "0", "_": "-", "+": "=", "{": "[", "}": "]", "|": "\\", ":": ";", "\"": "'", "<": ",",
  ">": ".", "?": "/"};
const CODES = {"`": "Backquote", "-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight",
  "\\": "Backslash", ";": "Semicolon", "'": "Quote", ",": "Comma", ".": "Period", "/": "Slash", " ": "Space"};

function charKey(ch) {
  if (ch === "\n") return {code: "Enter", keysym: KeyTable.XK_Return, shift: false};
  if (ch === "\t") return {code: "Tab", keysym: KeyTable.XK_Tab, shift: false};
  const keysym = ch.codePointAt(0);
  const base = SHIFTED[ch] || ch.toLowerCase();
  const shift = ch in SHIFTED || (ch !== ch.toLowerCase());
  let code = CODES[base];
  if (!code && /^[a-z]$/.test(base)) code = "Key" + base.toUpperCase();
  if (!code && /^[0-9]$/.test(base)) code = "Digit" + base;
  return code ? {code, keysym, shift} : {code: null, keysym: keysym < 0x100 ? keysym : 0x1000000 + keysym, shift: false};
}

const K = (code, keysym) => ({code, keysym});
const CTRL = K("ControlLeft", KeyTable.XK_Control_L), ALT = K("AltLeft", KeyTable.XK_Alt_L);
const COMBOS = {
  "ctrl-alt-backspace": [CTRL, ALT, K("Backspace", KeyTable.XK_BackSpace)],
  "alt-tab": [ALT, K("Tab", KeyTable.XK_Tab)],
  "alt-f4": [ALT, K("F4", KeyTable.XK_F4)],
  "ctrl-esc": [CTRL, K("Escape", KeyTable.XK_Escape)],
  "super": [K("MetaLeft", KeyTable.XK_Super_L)],
  "print": [K("PrintScreen", KeyTable.XK_Print)],
  "ctrl-c": [CTRL, K("KeyC", "c".codePointAt(0))],
};
for (let n = 1; n <= 7; n++) COMBOS[`ctrl-alt-f${n}`] = [CTRL, ALT, K(`F${n}`, KeyTable[`XK_F${n}`])];

// --- the two viewers behind one interface ------------------------------------------------------------
class VncViewer {
  constructor(url, events) {
    // The page's own socket, heard before noVNC hears it: noVNC's disconnect event drops the close reason,
    // which says why the portal ended the console.
    const socket = new WebSocket(url, ["binary"]);
    let endedBy = null;
    socket.addEventListener("close", (e) => { if (e.code === CLOSE_ENDED) endedBy = e.reason; });
    this.rfb = new RFB(screen, socket);
    this.rfb.addEventListener("connect", () => events.connected());
    this.rfb.addEventListener("disconnect", (e) => {
      if (endedBy !== null) events.ended(endedBy);
      else events.disconnected(e.detail.clean);
    });
    this.rfb.addEventListener("credentialsrequired", () => {
      // The proxy answers the display's password; a request for one means the display refused it.
      events.failed(said("Credentials"));
      this.rfb.disconnect();
    });
    this.rfb.addEventListener("securityfailure", (e) => events.failed(said("SecurityFailure", {reason: e.detail.reason || said("Refused")})));
    this.rfb.addEventListener("desktopname", (e) => { document.title = `${e.detail.name} · ${config.name} · ${said("Console")}`; });
    this.rfb.focusOnClick = true;
  }
  key(k, down) { this.rfb.sendKey(k.keysym, k.code, down); }
  ctrlAltDel() { this.rfb.sendCtrlAltDel(); }
  set viewOnly(value) { this.rfb.viewOnly = value; }
  fit(mode) {
    this.rfb.scaleViewport = mode === "scale";
    this.rfb.resizeSession = mode === "remote";
    this.rfb.clipViewport = false;
  }
  focus() { this.rfb.focus(); }
  disconnect() { this.rfb.disconnect(); }
}

class SpiceViewer {
  static async create(base, tickets, events) {
    const [Spice, Messages, {Constants}] = await Promise.all([
      import("../spice-html5/main.js"), import("../spice-html5/spicemsg.js"), import("../spice-html5/enums.js")]);
    return new SpiceViewer(Spice, Messages, Constants, base, tickets, events);
  }
  constructor(Spice, Messages, Constants, base, tickets, events) {
    Object.assign(this, {Spice, Messages, Constants, events, readOnly: false, agent: false, mode: "remote"});
    const [first, ...channels] = tickets.map((ticket) => socketUrl(base, ticket));
    let opened = false;
    this.sc = new Spice.SpiceMainConn({
      uri: first, screen_id: "spice-screen", message_id: "message-div", password: "",
      onerror: (error) => { if (opened) events.disconnected(false); else events.failed(String(error.message || error)); },
      onsuccess: () => {
        if (!opened) {
          // spice-html5 opens every further channel at its main socket's URL (main.js: `uri: this.ws.url`),
          // whose ticket is spent: there, this one socket hands each channel the next ticket of the batch.
          Object.defineProperty(this.sc.ws, "url", {get: () => channels.shift() || first});
        }
        opened = true;
        events.connected();
      },
      onagent: (sc) => {
        this.agent = true;
        window.addEventListener("resize", () => { if (this.mode === "remote") Spice.handle_resize(); });
        Spice.resize_helper(sc);
      },
    });
    // After spice-html5's own close handler (which reports a lost connection): why the portal ended it.
    this.sc.ws.addEventListener("close", (e) => { if (e.code === CLOSE_ENDED) events.ended(e.reason); });
    window.spice_connection = this.sc;  // spice-html5's resize helpers look for it there
    const inputs = document.getElementById("spice-screen");
    for (const type of ["keydown", "keyup", "mousedown", "mouseup", "mousemove", "wheel", "contextmenu"]) {
      inputs.addEventListener(type, (e) => { if (this.readOnly) e.stopImmediatePropagation(); }, true);
    }
  }
  key(k, down) {
    const inputs = this.sc && this.sc.inputs;
    const xt = XtScancode[k.code];
    if (!inputs || inputs.state !== "ready" || xt === undefined) return;
    const scan = (code) => code > 0xff ? (0xe0 | ((code & 0xff) << 8)) : code;  // SPICE's extended-key form
    const message = new this.Messages.SpiceMiniData();
    const key = down ? new this.Messages.SpiceMsgcKeyDown() : new this.Messages.SpiceMsgcKeyUp();
    key.code = down ? scan(xt) : scan(xt | 0x80);
    message.build_msg(down ? this.Constants.SPICE_MSGC_INPUTS_KEY_DOWN : this.Constants.SPICE_MSGC_INPUTS_KEY_UP, key);
    inputs.send_msg(message);
  }
  ctrlAltDel() { this.Spice.sendCtrlAltDel(this.sc); }
  set viewOnly(value) { this.readOnly = value; }
  fit(mode) {
    // SPICE resizes the guest's screen through its agent; without one the screen keeps its size.
    this.mode = mode;
    const canvas = document.querySelector("#spice-screen canvas");
    if (canvas) canvas.style.width = mode === "scale" ? "100%" : "";
    if (mode === "remote" && this.agent) this.Spice.resize_helper(this.sc);
  }
  focus() {
    const canvas = document.querySelector("#spice-screen canvas");  // spice-html5 listens for keys there
    (canvas || screen).focus();
  }
  disconnect() { if (this.sc) this.sc.stop(); }
}

// --- the page --------------------------------------------------------------------------------------
let viewer = null;
let generation = 0;

async function connect() {
  const mine = ++generation;
  if (viewer) { viewer.disconnect(); viewer = null; }
  screen.querySelectorAll(":scope > div:not(#spice-area)").forEach((node) => node.remove());
  const issued = await askTickets(config.ticketUrl);
  if (!issued || mine !== generation) return;
  let endedByPortal = false;  // its reason stays: SPICE's other channels may report their close after it
  const events = {
    connected: () => { if (mine === generation) { setState("connected", said("Connected")); applySettings(); } },
    disconnected: (clean) => {
      if (mine === generation && !endedByPortal) setState("ended", said(clean ? "Disconnected" : "ConnectionLost"));
    },
    failed: (reason) => { if (mine === generation) setState("failed", reason); },
    ended: (reason) => {
      endedByPortal = true;
      if (mine === generation) setState("ended", endedText(reason, config.ended));
    },
  };
  try {
    viewer = issued.kind === "spice"
      ? await SpiceViewer.create(issued.url, issued.tickets, events)
      : new VncViewer(socketUrl(issued.url, issued.tickets[0]), events);
  } catch (error) {
    setState("failed", said("CouldNotConnect", {error: error.message || error}));
  }
}

function applySettings() {
  if (!viewer) return;
  viewer.viewOnly = $("view-only").checked;
  viewer.fit($("scale-mode").value);
}

function press(keys) {
  if (!viewer || $("view-only").checked) return;
  keys.forEach((k) => viewer.key(k, true));
  [...keys].reverse().forEach((k) => viewer.key(k, false));
  viewer.focus();
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function typeText(text) {
  if (!viewer || $("view-only").checked) return;
  const target = viewer;
  // A guest's PS/2 keyboard buffers a few scancodes only: a burst would lose keys, so pace them.
  const gap = target instanceof SpiceViewer ? 20 : 5;
  const shift = K("ShiftLeft", KeyTable.XK_Shift_L);
  for (const ch of text.replace(/\r\n?/g, "\n")) {
    if (viewer !== target) return;  // reconnected meanwhile
    const k = charKey(ch);
    if (k.shift) target.key(shift, true);
    target.key(k, true);
    target.key(k, false);
    if (k.shift) target.key(shift, false);
    await pause(gap);
  }
  target.focus();
}

$("send-cad").addEventListener("click", () => { if (viewer && !$("view-only").checked) viewer.ctrlAltDel(); });
$("send-combo").addEventListener("change", (e) => {
  const keys = COMBOS[e.target.value];
  e.target.value = "";
  if (keys) press(keys);
});
$("paste-send").addEventListener("click", () => {
  typeText($("paste-text").value);
  $("paste-text").value = "";
  $("paste-text").closest("details").open = false;
});
$("scale-mode").addEventListener("change", applySettings);
$("view-only").addEventListener("change", applySettings);
$("fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen().catch(() => setState(stateLabel.dataset.state, stateLabel.textContent));
});
$("reconnect").addEventListener("click", connect);
// A click anywhere in the console area gives the guest the keyboard, not only one on its canvas (spice-html5
// listens for keys on its canvas alone). On click, after the browser has moved the focus where it landed.
screen.addEventListener("click", () => { if (viewer) viewer.focus(); });

window.vmportalConsole = {connect, typeText, press, state: consoleState};
connect();
