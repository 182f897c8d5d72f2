// Compile-time checks of the public API as a browser page sees it (DOM types): `npm run typecheck`.
import { KeyportClient, type Door, type ErrorReason, type SlotsResponse } from "../../src/index.js";

export async function browserUsage(): Promise<SlotsResponse> {
  // The browser's own WebSocket fits WebSocketConstructor.
  const client = await KeyportClient.initialize({ url: `ws://${location.host}`, WebSocket: window.WebSocket });
  const p = client.pkcs11({ win: "C:\\Windows\\System32\\opensc-pkcs11.dll" });
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("hello")));
  const data = btoa(String.fromCharCode(...digest));
  await p.signData({ slot_id: 1, cert_id: "01", pin: "1234", data, algorithm_reference: "sha256" });
  return p.slots();
}

/** The callback style of a page without async/await, under strict. */
export function browserCallbacks(show: (text: string) => void): void {
  void KeyportClient.initialize({}, (error, client) => {
    if (error) return show(error.reason === "AGENT_UNAVAILABLE" ? "Start the Keyport agent." : error.description);
    const p = client.pkcs11();
    p.slotsWithTokenPresent((error, response) => {
      if (error) return show(error.description);
      const first = response.data[0];
      if (!first) return show("Insert your card.");
      p.certificates(first.slot_id, (error, certs) => {
        if (error) return show(error.description);
        show(certs.data.map((cert) => cert.id).join(", "));
      });
    });
    p.info((error, response) => {
      // @ts-expect-error 'response' is possibly 'null': the error was not checked
      show(response.data.manufacturer_id);
      void error;
    });
    p.token(1, (error, response) => {
      if (error) {
        // @ts-expect-error 'response' is possibly 'null' (it is null when there is an error)
        show(response.data.label);
      }
    });
  });
  // @ts-expect-error 'client' is possibly 'null': the error was not checked
  void KeyportClient.initialize({}, (_error, client) => client.close());
}

/** The door: chosen by `transport`, reported by `agentInfo()` and `client.door`. */
export async function browserDoors(): Promise<"extension" | "websocket"> {
  const client = await KeyportClient.initialize({ transport: "extension", extensionTimeout: 500 });
  const { data } = await client.agentInfo();
  const door: Door = data.door;
  // @ts-expect-error not a transport
  void KeyportClient.initialize({ transport: "pigeon" });
  const reasons: ErrorReason[] = ["EXTENSION_UNAVAILABLE", "NATIVE_HOST_UNAVAILABLE"];
  void reasons;
  return client.door ?? door;
}
