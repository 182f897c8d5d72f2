// Compile-time checks of the public API as a Node program sees it (no DOM types): `npm run typecheck`.
import WebSocket from "ws";
import {
  KeyportClient,
  RestException,
  ERROR_CODES,
  type AbstractPkcs11,
  type Callback,
  type CertificatesResponse,
  type DataResponse,
  type ErrorReason,
  type SlotsResponse,
  type TokenResponse,
} from "../../src/index.js";

export async function nodeUsage(): Promise<void> {
  const client = await KeyportClient.initialize({
    url: "ws://127.0.0.1:10443",
    timeout: 5000,
    WebSocket, // the ws class fits WebSocketConstructor
    origin: "http://127.0.0.1:5555",
    module: { linux: "/usr/lib/softhsm/libsofthsm2.so", mac: "/usr/local/lib/softhsm/libsofthsm2.so" },
  });
  const pkcs11: AbstractPkcs11 = client.pkcs11();
  const slots = await pkcs11.slotsWithTokenPresent();
  const first = slots.data[0];
  if (!first) return;
  const certs: CertificatesResponse = await pkcs11.certificates(first.slot_id, { parseCerts: true });
  const subject: string | undefined = certs.data[0]?.parsed?.subject;
  void subject;
  const sig: DataResponse = await pkcs11.signData({
    slot_id: first.slot_id,
    cert_id: "01",
    pin: "1234",
    data: "base64",
    algorithm_reference: "sha256",
  });
  const ok: boolean = (await pkcs11.verifySignedData({ slot_id: 1, cert_id: "01", data: "", algorithm_reference: "sha256", signature: sig.data })).data;
  void ok;

  // Callbacks typed both ways fit.
  pkcs11.info((error: RestException | null, data) => void [error?.reason, data?.data.library_version]);
  pkcs11.token(1, (error: RestException, data: TokenResponse) => void [error.code, data.data.label]);
  client.pkcs11().certificates(1, (err, data) => void [err, data]);
  pkcs11.slots((error: RestException | null, response: SlotsResponse | null) => void [error, response]);
  const handler: Callback<SlotsResponse> = (error, response) => void [error, response];
  pkcs11.slotsWithTokenPresent(handler);

  // The README's idiom: after `if (error) return`, the response is not null (strict, inferred params).
  pkcs11.slots((error, response) => {
    if (error) return console.error(error.reason, error.description);
    const ids: number[] = response.data.map((slot) => slot.slot_id);
    void ids;
  });
  client.pkcs11().certificates(1, (error, response) => {
    if (error) return;
    const der: string | undefined = response.data[0]?.base64;
    void der;
  });
  // Code typed as the interface has the options-less callback form too.
  pkcs11.certificates(1, (error, response) => {
    if (error) return;
    void response.data.length;
  });
  client.pkcs11().certificates(1, { parseCerts: true }, (error, response) => {
    if (error !== null) return void error.code;
    void response.data[0]?.parsed?.subject;
  });
  pkcs11.info((error, response) => {
    if (!error) return void response.data.library_version;
    const reason: ErrorReason = error.reason;
    void reason;
  });
  void KeyportClient.initialize({ url: "ws://127.0.0.1:10443" }, (error, connected) => {
    if (error) return;
    const again: KeyportClient = connected;
    again.close();
  });

  // Without the check, or in the error branch, the response may be null: a strict error.
  pkcs11.slots((error, response) => {
    // @ts-expect-error 'response' is possibly 'null' (error not checked)
    void response.data;
    // @ts-expect-error 'error' is possibly 'null'
    void error.reason;
    if (error) {
      // @ts-expect-error 'response' is possibly 'null' (it is null when there is an error)
      void response.data;
    }
  });
  void KeyportClient.initialize({}, (error, connected) => {
    void error;
    // @ts-expect-error 'connected' is possibly 'null' (error not checked)
    connected.close();
  });
  // @ts-expect-error a callback for another method's response does not fit
  pkcs11.slots((error: RestException | null, response: TokenResponse | null) => void [error, response]);

  try {
    await pkcs11.info();
  } catch (e) {
    if (e instanceof RestException) {
      const reason: ErrorReason = e.reason;
      const code: number = e.code;
      const fromAgent: boolean = e.source === "agent";
      void [reason, code, fromAgent, e.pin_state, e.description, e.success === false];
      if (e.code === ERROR_CODES.AGENT_UNAVAILABLE) return;
    }
  }

  // @ts-expect-error the algorithm must be one of sha1/sha256/sha384/sha512
  await pkcs11.signData({ slot_id: 1, cert_id: "01", pin: "1", data: "", algorithm_reference: "md5" });
  // @ts-expect-error slot ids are numbers
  await pkcs11.token("1");
  // @ts-expect-error fields are snake_case
  await pkcs11.signData({ slotId: 1, cert_id: "01", pin: "1", data: "", algorithm_reference: "sha256" });
  // @ts-expect-error unknown OS key
  client.pkcs11({ windows: "C:\\x.dll" });
  client.close();
}

/** How the client calls a callback: (error, null) or (null, response). */
export function settle(callback: Callback<SlotsResponse>, error: RestException, response: SlotsResponse): void {
  callback(error, null);
  callback(null, response);
  // @ts-expect-error neither an error nor a response
  callback(null, null);
  // @ts-expect-error a response must be a SlotsResponse
  callback(null, { data: "x", success: true });
}
