// The Keyport demo page: list tokens and certificates, sign a text, verify the signature.
// Uses the built client bundle (npm run build copies it to demo/keyport-client.js).
import { KeyportClient, loopbackPermission } from "/demo/keyport-client.js";

const $ = (id) => document.getElementById(id);
const CKF_TOKEN_PRESENT = 0x1;
const CKF_TOKEN_INITIALIZED = 0x400;

// The agent: `?agent=ws://127.0.0.1:10443` when the page is served by a site, else the agent that
// served this page.
const params = new URLSearchParams(location.search);
const agentUrl = params.get("agent") || `ws://${location.host}`;
// The door: `?transport=extension|websocket` (default auto: the Keyport extension when it is
// installed, else the WebSocket).
const transport = params.get("transport") || "auto";
// The PKCS #11 library per operating system, as a site names it: `?linux=…&mac=…&win=…` (the
// client sends the one for the OS the browser runs on). None: the agent's default library.
const modules = Object.fromEntries(["linux", "mac", "win"].filter((os) => params.get(os)).map((os) => [os, params.get(os)]));
let pkcs11 = null;
/** The agent's features (`keyport.version`): "pin_prompt" when it can ask for the PIN itself. */
let features = [];
/** The tokens listed, by slot id. */
const tokensBySlot = new Map();

const PERMISSION_TEXT = {
  granted: "allowed",
  denied: "blocked: allow it in the site settings (the icon left of the address), then reload",
  prompt: "not decided yet: the browser asks when the page connects",
};

/** Show the browser's loopback permission for this page, and follow its changes. */
async function showPermission() {
  const state = await loopbackPermission();
  const box = $("permission");
  box.dataset.state = state || "none";
  box.textContent = state
    ? `Browser permission to reach this computer: ${PERMISSION_TEXT[state]}.`
    : "Browser permission to reach this computer: not needed here.";
  if (state && !showPermission.watching) {
    showPermission.watching = true;
    navigator.permissions.query({ name: "loopback-network" }).then((status) => {
      status.onchange = () => showPermission();
    });
  }
}

const DOOR_TEXT = {
  extension: "through the Keyport browser extension (no permission to reach this computer needed)",
  websocket: "directly over the WebSocket",
};

/** Show which door the page uses to reach the agent. */
function showDoor(door) {
  const box = $("door");
  box.dataset.door = door || "none";
  box.textContent = door ? `Door to the agent: ${DOOR_TEXT[door] || door}.` : "Door to the agent: none yet.";
}

const STATUS_TEXT = {
  connecting: "Connecting to the agent…",
  "permission-prompt": "Your browser is asking whether this site may access apps on this device: choose Allow.",
};

/** Where the page reaches the agent, in words (once connected). */
let where = agentUrl;

/**
 * Follow the connection (the client's `onStatus`). Before the first connection the start-up code
 * says "Connected"; after it, the connection can close (the agent stopped or restarted) and open
 * again by itself: say so each time, and list the tokens again (what changed meanwhile was not sent).
 */
function connectionStatus(status) {
  if (!pkcs11) {
    if (STATUS_TEXT[status]) setStatus(status, STATUS_TEXT[status]);
  } else if (status === "closed") {
    setStatus("closed", `The connection to ${where} closed (the agent stopped?). Reconnecting…`);
  } else if (status === "connecting") {
    // Tried again and again while the agent is away: keep saying the connection was lost.
    if ($("status").dataset.state !== "closed") setStatus("closed", `Reconnecting to ${where}…`);
  } else if (status === "connected") {
    setStatus("ready", `Connected again to ${where}.`);
    reloadSoon();
  } else if (STATUS_TEXT[status]) {
    setStatus(status, STATUS_TEXT[status]);
  }
  showPermission();
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function showError(err) {
  const box = $("error");
  const reason = err && err.reason ? err.reason : "ERROR";
  let text = `${reason}${err && err.code ? ` (${err.code})` : ""}: ${err && err.description ? err.description : String(err)}`;
  if (reason === "AGENT_UNAVAILABLE") text += " Start or install the Keyport agent, then reload this page.";
  if (reason === "AGENT_OUTDATED") text += " Update the Keyport agent, then reload this page.";
  if (reason === "EXTENSION_UNAVAILABLE") text += " (This page asked for the extension only: ?transport=extension.)";
  if (err && err.pin_state && err.pin_state !== "ok") text += ` PIN state: ${err.pin_state}.`;
  box.textContent = text;
  box.dataset.reason = reason;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
  delete $("error").dataset.reason;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function base64(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
}

async function loadTokens() {
  clearError();
  const slots = (await pkcs11.slots()).data;
  const rows = [];
  const tokens = [];
  for (const slot of slots) {
    let token = null;
    if (slot.flags & CKF_TOKEN_PRESENT) token = (await pkcs11.token(slot.slot_id)).data;
    const initialized = token && token.flags & CKF_TOKEN_INITIALIZED;
    rows.push(
      el("tr", { id: `slot-${slot.slot_id}` },
        el("td", { textContent: String(slot.slot_id) }),
        el("td", { textContent: slot.description }),
        el("td", { textContent: token ? (initialized ? token.label : "(not initialised)") : "(no token)" }),
        el("td", { className: "pin-state", textContent: token && initialized ? token.pin_state : "" })),
    );
    if (initialized) {
      tokens.push(token);
      tokensBySlot.set(token.slot_id, token);
    }
  }
  $("slots").tBodies[0].replaceChildren(...rows);

  // Preselect the first token that holds certificates.
  let preferred = tokens[0];
  for (const token of tokens) {
    if ((await pkcs11.certificates(token.slot_id)).data.length > 0) {
      preferred = token;
      break;
    }
  }
  $("token-select").replaceChildren(
    ...tokens.map((t) => el("option", { value: String(t.slot_id), textContent: `${t.label} (slot ${t.slot_id})`, selected: t === preferred })),
  );
  await loadCertificates();
}

/** Read one token again and show its PIN state (a wrong PIN changes it: count low, final try, locked). */
async function refreshToken(slotId) {
  const token = (await pkcs11.token(slotId)).data;
  tokensBySlot.set(slotId, token);
  const cell = document.querySelector(`#slot-${slotId} .pin-state`);
  if (cell) cell.textContent = token.pin_state;
}

/** Reload the token list once things settle (several events often come together). */
let reloading = Promise.resolve();
let reloadTimer;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => {
    reloading = reloading.then(() => loadTokens()).catch(showError);
  }, 150);
}

/** A token came or went: say so, and list the tokens again. */
function tokenEvent(e) {
  const box = $("token-events");
  const label = e.token_label || "A token";
  box.textContent = `${label} ${e.event === "inserted" ? "was inserted into" : "was removed from"} slot ${e.slot_id}.`;
  box.dataset.count = String(Number(box.dataset.count || 0) + 1);
  // Every event so far, for whoever wants to check (the browser test does).
  box.dataset.events = `${box.dataset.events || ""} ${e.event}:${e.slot_id}`.trim();
  box.hidden = false;
  reloadSoon();
}

function describeKey(p) {
  return p.public_key_algorithm === "EC" ? `EC ${p.curve || p.public_key_size + " bits"}` : `${p.public_key_algorithm} ${p.public_key_size}`;
}

const PIN_NOTES = {
  reader: "The agent asks the card reader: type the PIN on its keypad. The page never sees it.",
  agent: "The agent asks for the PIN in its own window, which names this site and the certificate. The page never sees it.",
};

/** Offer the PIN paths the selected token and the agent have. */
function showPinPaths() {
  const token = tokensBySlot.get(Number($("token-select").value));
  const path = $("pin-path");
  const reader = path.querySelector('option[value="reader"]');
  const agent = path.querySelector('option[value="agent"]');
  reader.hidden = !(token && token.protected_authentication_path);
  agent.hidden = !features.includes("pin_prompt") || !reader.hidden;
  if (path.selectedOptions[0]?.hidden) path.value = "page";
  // A PIN-pad reader: the keypad is the natural choice.
  if (!reader.hidden && path.dataset.slot !== String(token.slot_id)) path.value = "reader";
  path.dataset.slot = token ? String(token.slot_id) : "";
  // One way only (type it here): no choice to offer, the label names the PIN field.
  const single = reader.hidden && agent.hidden;
  path.hidden = single;
  $("pin-path-label").htmlFor = single ? "pin" : "pin-path";
  showPinNote();
}

function showPinNote() {
  const path = $("pin-path").value;
  $("pin").hidden = path !== "page";
  $("pin-note").hidden = path === "page";
  $("pin-note").textContent = PIN_NOTES[path] || "";
}

async function loadCertificates() {
  showPinPaths();
  const box = $("certs");
  const slotId = Number($("token-select").value);
  if (!$("token-select").value) {
    box.dataset.state = "empty";
    box.replaceChildren(el("p", { className: "muted", textContent: "No initialised token found." }));
    return;
  }
  box.dataset.state = "loading";
  const certs = (await pkcs11.certificates(slotId, { parseCerts: true })).data;
  certs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (certs.length === 0) {
    box.dataset.state = "empty";
    box.replaceChildren(el("p", { className: "muted", textContent: "This token has no certificates." }));
    return;
  }
  // A list read again (a token event, the agent back after a restart) keeps the person's choice.
  const chosen = document.querySelector('input[name="cert"]:checked')?.value;
  const keep = certs.some((c) => c.id === chosen);
  box.replaceChildren(
    ...certs.map((c, i) => {
      const p = c.parsed;
      const checked = keep ? c.id === chosen : i === 0;
      const input = el("input", { type: "radio", name: "cert", value: c.id, id: `cert-${c.id}`, checked });
      const details = p
        ? [
            el("div", { className: "name", textContent: p.common_name || p.subject }),
            el("div", { className: "details", textContent: `Subject: ${p.subject}` }),
            el("div", { className: "details", textContent: `Issuer: ${p.issuer}` }),
            el("div", { className: "details", textContent: `Valid: ${p.not_before.slice(0, 10)} to ${p.not_after.slice(0, 10)}` }),
            el("div", { className: "details key", textContent: `Key: ${describeKey(p)}${p.key_usage.length ? ` · ${p.key_usage.join(", ")}` : ""}` }),
            el("div", { className: "details", textContent: `Id: ${c.id}` }),
          ]
        : [el("div", { className: "name", textContent: `Certificate ${c.id} (unreadable)` })];
      return el("label", { className: "cert", htmlFor: input.id }, input, el("div", {}, ...details));
    }),
  );
  box.dataset.state = "ready";
}

async function sign(event) {
  event.preventDefault();
  clearError();
  const result = $("result");
  const chosen = document.querySelector('input[name="cert"]:checked');
  if (!chosen) {
    showError({ reason: "NO_CERTIFICATE", description: "Pick a certificate first." });
    return;
  }
  $("sign").disabled = true;
  result.dataset.state = "signing";
  for (const id of ["digest", "signature", "verify-result"]) $(id).textContent = "";
  delete $("verify-result").dataset.valid;
  try {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode($("text").value));
    const request = {
      slot_id: Number($("token-select").value),
      cert_id: chosen.value,
      data: base64(digest),
      algorithm_reference: "sha256",
    };
    // Without `pin` the agent takes it from the reader's keypad or its own PIN window.
    if ($("pin-path").value === "page") request.pin = $("pin").value;
    $("digest").textContent = request.data;
    const signature = (await pkcs11.signData(request)).data;
    $("signature").textContent = signature;
    const { pin, ...unsigned } = request; // verification needs no PIN
    const valid = (await pkcs11.verifySignedData({ ...unsigned, signature })).data;
    $("verify-result").dataset.valid = String(valid);
    $("verify-result").textContent = valid
      ? "✔ Valid: the agent checked the signature with the certificate's public key."
      : "✘ Invalid signature.";
    result.dataset.state = "signed";
    // A right PIN after wrong ones: the token shows "ok" again.
    const cell = document.querySelector(`#slot-${request.slot_id} .pin-state`);
    if (cell && cell.textContent !== "ok") await refreshToken(request.slot_id).catch(() => {});
  } catch (err) {
    result.dataset.state = "error";
    showError(err);
    // The token counts wrong PINs: show its PIN state now, not after a reload.
    if (err && typeof err.reason === "string" && err.reason.startsWith("PIN_")) {
      await refreshToken(Number($("token-select").value)).catch(() => {});
    }
  } finally {
    $("sign").disabled = false;
  }
}

async function start() {
  $("sign-form").addEventListener("submit", sign);
  $("token-select").addEventListener("change", () => loadCertificates().catch(showError));
  $("pin-path").addEventListener("change", showPinNote);
  $("refresh").addEventListener("click", () => loadTokens().catch(showError));
  await showPermission();
  try {
    const client = await KeyportClient.initialize({
      url: agentUrl,
      transport,
      ...(Object.keys(modules).length ? { module: modules } : {}),
      onStatus: connectionStatus,
    });
    pkcs11 = client.pkcs11();
    const info = (await pkcs11.info()).data;
    features = await client.agentInfo().then(
      (r) => r.data.features,
      () => [], // an agent before keyport.version
    );
    showDoor(client.door);
    where = client.door === "extension" ? "the agent through the Keyport extension" : agentUrl;
    setStatus("loading", `Connected to ${where}: ${info.manufacturer_id} ${info.library_description} ${info.library_version}.`);
    await loadTokens();
    // Live updates: the agent says when a token comes or goes (no polling here).
    if (features.includes("slot_events")) {
      pkcs11.onTokenEvent(tokenEvent, { onError: (err) => console.warn("token events:", err.reason) });
      $("refresh").title = "The list also updates by itself when a token is inserted or removed.";
    }
    setStatus("ready", $("status").textContent);
  } catch (err) {
    setStatus("error", "Not connected.");
    showDoor(undefined);
    showError(err);
    showPermission();
  }
}

start();
