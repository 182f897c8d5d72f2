// The README stays true: its error table matches protocol.ts, its size figure matches the bundle.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { execFileSync } from "node:child_process";
import { build } from "esbuild";
import { ERROR_CODES, ERROR_MESSAGES } from "../../dist/esm/index.js";

const root = new URL("../../", import.meta.url);
const readme = await readFile(new URL("README.md", root), "utf8");

test("the README's error table has every reason with its code and message, in order", () => {
  const rows = [...readme.matchAll(/^\| (-?\d+) \| `([A-Z_]+)` \| (.+) \|$/gm)].map((m) => [Number(m[1]), m[2], m[3]]);
  const expected = Object.keys(ERROR_CODES).map((reason) => [ERROR_CODES[reason], reason, ERROR_MESSAGES[reason]]);
  assert.deepEqual(rows, expected);
});

test("the README's bundle size is the measured one (esbuild --minify, gzip -9)", async () => {
  const out = await build({
    entryPoints: [new URL("src/index.ts", root).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    minify: true,
    write: false,
  });
  // The same measure as `npm run size`: the gzip command line at -9.
  const gz = execFileSync("gzip", ["-9"], { input: out.outputFiles[0].contents }).length;
  const m = /\*\*([\d.]+) KiB\*\* minified and gzipped \((\d+) bytes/.exec(readme);
  assert.ok(m, "the README states the size");
  const stated = Number(m[2]);
  assert.equal(stated, gz, `README says ${stated} bytes, measured ${gz}: update README.md`);
  assert.equal(m[1], (stated / 1024).toFixed(1));
});
