// Compile-time checks of the public API as a Node program sees it (no DOM types): `npm run typecheck`.
import WebSocket from "ws";
import {
  KeyportClient,
  RestException,
  ERROR_CODES,
  type AbstractPkcs11,
  type CertificatesResponse,
  type DataResponse,
  type ErrorReason,
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
