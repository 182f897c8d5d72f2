// What the README's fragments use without declaring it (the README's earlier examples define it).
// A global script on purpose: a block that declares one of these names itself shadows it.
// Add a name here only when a README block uses it as defined elsewhere in the README.

/** `const pkcs11 = client.pkcs11();` (Initialize). */
declare const pkcs11: import("keyport-client").Pkcs11;
/** `const client = await KeyportClient.initialize(...)` (Initialize). */
declare const client: import("keyport-client").KeyportClient;
/** The base64 digest that was signed (signData). */
declare const digestBase64: string;
/** `const { data: signature } = await pkcs11.signData(...)` (signData). */
declare const signature: string;
/** A slot id from `slots()` (the PIN paths example). */
declare const slotId: number;
/** The page's own PIN field (the PIN paths example). */
declare function askThePersonForThePin(): string;
/** The page's own way to list the tokens again (the onTokenEvent example). */
declare function refreshTheTokenList(): void;
/** The base64 digests of the documents to sign (the signDataBatch example). */
declare const invoiceDigests: string[];
