// The README's way to install the client before it is on the registry, followed as written: pack the
// package (its prepack script builds dist/), install the tarball into a fresh project, import and
// require it, and compile the README's first example under the README's TypeScript settings (and see
// tsc's defaults refuse it, which is why the README names the settings).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, readdir, symlink, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { JS_CLIENT, tempDir } from "../helpers/agent.mjs";

const run = promisify(execFile);
const tsc = join(JS_CLIENT, "node_modules/typescript/bin/tsc");

/** The fenced block of `lang` that follows the first line matching `after` in README.md. */
async function readmeBlock(after, lang) {
  const lines = (await readFile(join(JS_CLIENT, "README.md"), "utf8")).split("\n");
  const from = lines.findIndex((l) => after.test(l));
  assert.ok(from >= 0, `README: no line matching ${after}`);
  const open = lines.findIndex((l, i) => i > from && l.trim() === "```" + lang);
  assert.ok(open > from, `README: no ${lang} block after ${after}`);
  const close = lines.findIndex((l, i) => i > open && l.trim() === "```");
  return lines.slice(open + 1, close).join("\n");
}

test("the README's install steps: npm pack, then npm install the tarball into a project; it imports, requires and type-checks", async () => {
  const pkg = JSON.parse(await readFile(join(JS_CLIENT, "package.json"), "utf8"));
  const tarball = `${pkg.name}-${pkg.version}.tgz`;
  const steps = await readmeBlock(/^## Install/, "sh");
  assert.match(steps, /^npm ci\b/m);
  assert.match(steps, /^npm pack\b/m);
  assert.match(steps, new RegExp(`^npm install \\S*/js-client/${tarball.replace(/\./g, "\\.")}\\s`, "m"), "the README installs the file npm pack writes");
  const tsconfig = JSON.parse(await readmeBlock(/^\*\*TypeScript settings\.\*\*/, "json"));
  const example = await readmeBlock(/^## Initialize/, "js");
  assert.match(example, /^const client = await KeyportClient\.initialize\(/m, "the example uses top-level await");

  const tmp = await tempDir("keyport-install-");
  try {
    // `npm pack` (into the temporary folder, not the working tree): prepack builds dist/ first.
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", tmp.dir], { cwd: JS_CLIENT, timeout: 120_000 });
    // The build's own line comes first on stdout, then npm's JSON.
    assert.match(stdout, /browser bundle/, "prepack built the package");
    assert.equal(JSON.parse(stdout.slice(stdout.search(/^\[/m)))[0].filename, tarball);
    const project = join(tmp.dir, "project");
    await mkdir(project);
    await writeFile(join(project, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", type: "module", private: true }));
    await run("npm", ["install", join(tmp.dir, tarball), "--no-audit", "--no-fund", "--offline", "--loglevel=error"], {
      cwd: project,
      timeout: 120_000,
    });
    const manifest = JSON.parse(await readFile(join(project, "package.json"), "utf8"));
    assert.match(manifest.dependencies["keyport-client"], new RegExp(`^file:.*${tarball.replace(/\./g, "\\.")}$`));
    const installed = await readdir(join(project, "node_modules/keyport-client"));
    for (const f of ["dist", "README.md", "LICENSE-MIT", "LICENSE-APACHE", "package.json"]) assert.ok(installed.includes(f), f);
    assert.ok(!installed.includes("src") && !installed.includes("test"), `installed: ${installed}`);

    // import and require, from the project (not through this repository's own package).
    const esm = await run(process.execPath, ["--input-type=module", "-e", 'import { DEFAULT_PORT, KeyportClient } from "keyport-client"; console.log(DEFAULT_PORT, typeof KeyportClient.initialize);'], { cwd: project });
    assert.equal(esm.stdout.trim(), "10443 function");
    const cjs = await run(process.execPath, ["-e", 'const k = require("keyport-client"); console.log(k.ERROR_CODES.AGENT_UNAVAILABLE, require.resolve("keyport-client"));'], { cwd: project });
    assert.match(cjs.stdout.trim(), /^2001 .*node_modules\/keyport-client\/dist\/cjs\/index\.cjs$/);

    // The README's Initialize example, as written, under the README's tsconfig: compiles.
    await symlink(join(JS_CLIENT, "node_modules/@types"), join(project, "node_modules/@types"), "dir");
    await writeFile(join(project, "example.ts"), `${example}\nexport {};\n`);
    await writeFile(join(project, "tsconfig.json"), JSON.stringify({ ...tsconfig, compilerOptions: { ...tsconfig.compilerOptions, noEmit: true }, files: ["example.ts"] }));
    await run(process.execPath, [tsc, "-p", project]).catch((e) => assert.fail(`tsc with the README's settings failed:\n${e.stdout}${e.stderr}`));
    // Under tsc's defaults the same file fails on its top-level await (why the README says so).
    const defaults = await run(process.execPath, [tsc, "--noEmit", "example.ts"], { cwd: project }).then(
      () => "",
      (e) => e.stdout,
    );
    assert.match(defaults, /error TS1378/, `tsc's defaults: ${defaults}`);
  } finally {
    await tmp.cleanup();
  }
});
