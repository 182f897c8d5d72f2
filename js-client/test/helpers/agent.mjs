// Run the real Keyport agent on a private SoftHSM token for the integration and browser tests.
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

export const JS_CLIENT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const REPO = resolve(JS_CLIENT, "..");
export const MODULE = process.env.KEYPORT_MODULE || "/usr/lib/softhsm/libsofthsm2.so";
/** Distinctive, so "the PIN is never echoed" cannot match a port number or a timestamp by chance. */
export const PIN = "kpTestPin7301";
/** Certificate ids on the demo token, and the DER files the provisioning script writes. */
export const KEYS = [
  { id: "01", file: "rsa-2048.der", type: "rsa", bits: 2048, curve: null, cn: "Keyport Demo RSA-2048" },
  { id: "02", file: "ec-p256.der", type: "ec", bits: 256, curve: "P-256", cn: "Keyport Demo P-256" },
  { id: "03", file: "ec-p384.der", type: "ec", bits: 384, curve: "P-384", cn: "Keyport Demo P-384" },
  { id: "04", file: "ec-p521.der", type: "ec", bits: 521, curve: "P-521", cn: "Keyport Demo P-521" },
];
/** A certificate with no private key (the provisioning script adds it for KEY_NOT_FOUND). */
export const ORPHAN_CERT_ID = "09";

export function agentBinary() {
  const bin = process.env.KEYPORT_BIN || join(REPO, "target/debug/keyport");
  if (!existsSync(bin)) {
    throw new Error(`Keyport agent not found at ${bin}: run \`cargo build -p keyport\` or set KEYPORT_BIN.`);
  }
  return bin;
}

/** A temporary directory, removed by `cleanup()`. */
export async function tempDir(prefix = "keyport-js-") {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Provision the demo tokens into `dir` (scripts/provision-token.sh). Returns the conf path. */
export async function provisionToken(dir) {
  await run(join(REPO, "scripts/provision-token.sh"), [dir, PIN], { timeout: 120_000 });
  return { conf: join(dir, "softhsm2.conf"), certsDir: join(dir, "certs") };
}

export async function readCert(certsDir, key) {
  return readFile(join(certsDir, key.file));
}

/** A TCP port that was free a moment ago. */
export async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    for (const child of running) child.kill("SIGKILL");
    process.exit(130);
  });
}

/**
 * Start `keyport` with the SoftHSM module and `args`, on `port` (0: any). Resolves once it prints
 * its URL: `{ url, port, demoUrl, stop(), log() }`. `env` adds to (or overrides) its environment;
 * `module` is its default (first) PKCS #11 library. `stop()` sends SIGTERM and waits.
 */
export async function startAgent({ conf, port = 0, args = [], env: extraEnv = {}, module = MODULE }) {
  const argv = ["--listen", `127.0.0.1:${port}`, "--module", module, "--no-tray", ...args];
  // Like the Rust harness: no desktop session (a prompt must never reach the person running the
  // tests, and "no way to ask" must be what the tests see), and remembered sites in the test's
  // own folder, not in ~/.local/state.
  const env = { ...process.env, SOFTHSM2_CONF: conf, RUST_LOG: process.env.RUST_LOG || "info" };
  for (const name of ["DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY"]) delete env[name];
  env.XDG_STATE_HOME = join(dirname(conf), "state");
  // Neither the person's nor the administrator's configuration of this machine.
  env.XDG_CONFIG_HOME = join(dirname(conf), "config");
  env.KEYPORT_SYSTEM_CONFIG = join(dirname(conf), "etc-keyport", "keyport.toml");
  Object.assign(env, extraEnv);
  const child = spawn(agentBinary(), argv, {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
  exited.then(() => running.delete(child));

  const ready = await new Promise((resolveReady, rejectReady) => {
    const timer = setTimeout(() => rejectReady(new Error(`agent did not start in 20 s:\n${stderr}`)), 20_000);
    child.stdout.on("data", (d) => {
      stdout += d;
      const m = /listening on (ws:\/\/\S+)/.exec(stdout);
      const demo = /Demo page: (http:\/\/\S+)/.exec(stdout);
      const wantsDemo = argv.includes("--demo");
      if (m && (!wantsDemo || demo)) {
        clearTimeout(timer);
        resolveReady({ url: m[1], demoUrl: demo ? demo[1] : undefined });
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rejectReady(new Error(`agent exited (${code ?? signal}) before it was ready:\n${stderr}`));
    });
  });
  const actualPort = Number(new URL(ready.url).port);
  return {
    url: ready.url,
    demoUrl: ready.demoUrl,
    port: actualPort,
    log: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
