// Compile-time checks of the public API as a browser page sees it (DOM types): `npm run typecheck`.
import { KeyportClient, type SlotsResponse } from "../../src/index.js";

export async function browserUsage(): Promise<SlotsResponse> {
  // The browser's own WebSocket fits WebSocketConstructor.
  const client = await KeyportClient.initialize({ url: `ws://${location.host}`, WebSocket: window.WebSocket });
  const p = client.pkcs11({ win: "C:\\Windows\\System32\\opensc-pkcs11.dll" });
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("hello")));
  const data = btoa(String.fromCharCode(...digest));
  await p.signData({ slot_id: 1, cert_id: "01", pin: "1234", data, algorithm_reference: "sha256" });
  return p.slots();
}
