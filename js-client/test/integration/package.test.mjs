// The built package as a consumer gets it: exports map, ESM and CommonJS, TypeScript declarations,
// the files `npm pack` would publish, and no runtime dependencies.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import * as esm from "keyport-client";
import { JS_CLIENT, tempDir } from "../helpers/agent.mjs";

const run = promisify(execFile);

test("import and require resolve to the ESM and CommonJS builds with the same API", () => {
  const require = createRequire(import.meta.url);
  assert.match(require.resolve("keyport-client"), /dist\/cjs\/index\.cjs$/);
  const cjs = require("keyport-client");
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  for (const name of ["KeyportClient", "RestException", "ERROR_CODES", "ERROR_MESSAGES", "METHODS", "DEFAULT_PORT"]) {
    assert.ok(name in esm, name);
  }
  assert.equal(esm.DEFAULT_PORT, 10443);
  assert.equal(esm.ERROR_CODES.AGENT_UNAVAILABLE, 2001);
});

test("package.json: no runtime dependencies, ws an optional peer", async () => {
  const pkg = JSON.parse(await readFile(join(JS_CLIENT, "package.json"), "utf8"));
  assert.equal(pkg.dependencies, undefined);
  assert.equal(pkg.peerDependenciesMeta.ws.optional, true);
  const browser = await readFile(join(JS_CLIENT, "dist/browser/keyport-client.min.js"), "utf8");
  assert.doesNotMatch(browser, /\brequire\(/, "the browser bundle requires nothing");
  assert.doesNotMatch(browser, /from\s*["']/, "the browser bundle imports nothing statically");
});

test("npm publish --dry-run: builds, declarations, README and licenses; no sources, tests or demo", async () => {
  const { stdout, stderr } = await run("npm", ["publish", "--dry-run", "--json", "--ignore-scripts"], { cwd: JS_CLIENT });
  const files = JSON.parse(stdout)["keyport-client"].files.map((f) => f.path);
  for (const f of [
    "dist/esm/index.js",
    "dist/esm/index.d.ts",
    "dist/cjs/index.cjs",
    "dist/cjs/index.d.cts",
    "dist/browser/keyport-client.min.js",
    "README.md",
    "LICENSE-MIT",
    "LICENSE-APACHE",
    "package.json",
  ]) {
    assert.ok(files.includes(f), `${f} is published`);
  }
  const unwanted = files.filter((f) => !f.startsWith("dist/") && !["README.md", "LICENSE-MIT", "LICENSE-APACHE", "package.json"].includes(f));
  assert.deepEqual(unwanted, [], "only dist/, the README, the licenses and package.json (no src/, test/, demo/, scripts/)");
  // The source maps carry the sources, so src/ need not ship for them to work.
  const map = JSON.parse(await readFile(join(JS_CLIENT, "dist/esm/index.js.map"), "utf8"));
  assert.equal(map.sourcesContent?.length, map.sources.length);
  // npm fixed nothing in package.json (it warns when it must) and published nothing else.
  assert.doesNotMatch(stderr, /npm warn publish (?!This command requires you to be logged in)/, stderr);

  const pkg = JSON.parse(await readFile(join(JS_CLIENT, "package.json"), "utf8"));
  assert.equal(pkg.license, "MIT OR Apache-2.0");
  assert.deepEqual(pkg.publishConfig, { access: "public", provenance: true });
  assert.equal(pkg.exports["."].import.types, "./dist/esm/index.d.ts");
  assert.equal(pkg.exports["."].require.types, "./dist/cjs/index.d.cts");
  assert.equal(pkg.scripts.prepack, "node scripts/build.mjs", "npm pack and npm publish build dist/ first");
  // The licenses shipped are the repository's.
  for (const name of ["LICENSE-MIT", "LICENSE-APACHE"]) {
    assert.equal(await readFile(join(JS_CLIENT, name), "utf8"), await readFile(join(JS_CLIENT, "..", name), "utf8"), name);
  }
});

test("TypeScript consumers (ESM and CommonJS, strict, NodeNext) compile against the declarations", async () => {
  const tmp = await tempDir("keyport-ts-consumer-");
  try {
    const dir = tmp.dir;
    await mkdir(join(dir, "node_modules/@types"), { recursive: true });
    await symlink(JS_CLIENT, join(dir, "node_modules/keyport-client"), "dir");
    await symlink(join(JS_CLIENT, "node_modules/@types/node"), join(dir, "node_modules/@types/node"), "dir");
    await writeFile(join(dir, "package.json"), JSON.stringify({ name: "consumer", type: "module" }));
    await writeFile(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: "NodeNext",
          moduleResolution: "NodeNext",
          target: "ES2022",
          noEmit: true,
          skipLibCheck: false,
          types: ["node"],
        },
        files: ["esm.mts", "cjs.cts"],
      }),
    );
    const body = (imp) => `${imp}
export async function main(): Promise<string> {
  const client = await KeyportClient.initialize({ url: "ws://127.0.0.1:10443", module: { linux: "/usr/lib/softhsm/libsofthsm2.so" } });
  const p = client.pkcs11();
  const slots = await p.slotsWithTokenPresent();
  const id: number = slots.data[0]?.slot_id ?? 0;
  const certs = await p.certificates(id, { parseCerts: true });
  const sig = await p.signData({ slot_id: id, cert_id: certs.data[0]?.id ?? "", pin: "1234", data: "", algorithm_reference: "sha256" });
  try { await p.info(); } catch (e) { if (e instanceof RestException && e.code === ERROR_CODES.AGENT_UNAVAILABLE) return e.reason; }
  return sig.data;
}
`;
    await writeFile(join(dir, "esm.mts"), body('import { KeyportClient, RestException, ERROR_CODES } from "keyport-client";'));
    // In a .cts file the import resolves through the "require" condition to dist/cjs/*.d.cts.
    await writeFile(join(dir, "cjs.cts"), body('import { KeyportClient, RestException, ERROR_CODES } from "keyport-client";'));
    const tsc = join(JS_CLIENT, "node_modules/typescript/bin/tsc");
    await run(process.execPath, [tsc, "-p", dir]).catch((e) => assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`));
    // And a consumer error is reported (the check can fail).
    await writeFile(join(dir, "esm.mts"), 'import { KeyportClient } from "keyport-client";\nKeyportClient.initialize({ url: 10443 });\n');
    const bad = await run(process.execPath, [tsc, "-p", dir]).then(
      () => null,
      (e) => e.stdout,
    );
    assert.match(bad ?? "", /esm\.mts.*error TS2322/s);
  } finally {
    await tmp.cleanup();
  }
});
