// Independent signature checks with the openssl command line (never with Keyport itself).
import { execFile } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

function openssl(args) {
  return new Promise((resolve) => {
    execFile("openssl", args, (error, stdout, stderr) => resolve({ code: error ? error.code ?? 1 : 0, stdout, stderr }));
  });
}

function derLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function derInteger(bytes) {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  let v = bytes.subarray(i);
  if (v[0] & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return Buffer.concat([Buffer.from([0x02]), derLength(v.length), v]);
}

/** An ECDSA signature as raw r||s (PKCS #11, WebCrypto) converted to DER (OpenSSL). */
export function rawEcdsaToDer(raw) {
  if (raw.length % 2 !== 0) throw new Error(`r||s has an odd length ${raw.length}`);
  const half = raw.length / 2;
  const body = Buffer.concat([derInteger(raw.subarray(0, half)), derInteger(raw.subarray(half))]);
  return Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
}

/** The digest of `message` with a Keyport algorithm_reference. */
export function digestOf(message, algorithm) {
  return createHash(algorithm).update(message).digest();
}

/**
 * Verify `signature` (as Keyport returns it: PKCS #1 v1.5 for RSA, raw r||s for EC) over `digest`
 * with the public key of `certDer`, using `openssl pkeyutl -verify`. Resolves true or false, and
 * throws when openssl fails for another reason than a bad signature.
 */
export async function opensslVerify({ certDer, digest, signature, algorithm }) {
  const keyType = new X509Certificate(certDer).publicKey.asymmetricKeyType;
  const dir = await mkdtemp(join(tmpdir(), "keyport-verify-"));
  try {
    const cert = join(dir, "cert.der");
    const pub = join(dir, "pub.pem");
    const dig = join(dir, "digest.bin");
    const sig = join(dir, "sig.bin");
    await writeFile(cert, certDer);
    await writeFile(dig, digest);
    const x = await openssl(["x509", "-inform", "DER", "-in", cert, "-pubkey", "-noout", "-out", pub]);
    if (x.code !== 0) throw new Error(`openssl x509: ${x.stderr}`);
    let args;
    if (keyType === "rsa") {
      await writeFile(sig, signature);
      args = ["pkeyutl", "-verify", "-pubin", "-inkey", pub, "-in", dig, "-sigfile", sig, "-pkeyopt", `digest:${algorithm}`];
    } else if (keyType === "ec") {
      await writeFile(sig, rawEcdsaToDer(signature));
      args = ["pkeyutl", "-verify", "-pubin", "-inkey", pub, "-in", dig, "-sigfile", sig];
    } else {
      throw new Error(`unexpected key type ${keyType}`);
    }
    const r = await openssl(args);
    const out = r.stdout + r.stderr;
    if (r.code === 0 && /Signature Verified Successfully/.test(out)) return true;
    if (/Signature Verification Failure/.test(out)) return false;
    throw new Error(`openssl ${args.join(" ")} failed (${r.code}): ${out}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
