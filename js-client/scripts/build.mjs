// Build keyport-client:
//   dist/esm/index.js            ESM (Node and bundlers), with dist/esm/*.d.ts from tsc
//   dist/cjs/index.cjs           CommonJS, with dist/cjs/*.d.cts (the same declarations)
//   dist/browser/keyport-client.min.js   one minified ESM file for <script type="module">
//   demo/keyport-client.js       a copy of the browser bundle for the demo page (gitignored)
// `node scripts/build.mjs --js` skips the declarations (quick rebuild for the unit tests).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const jsOnly = process.argv.includes("--js");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

// A full build starts clean; --js only overwrites the JavaScript (declarations stay).
if (!jsOnly) rmSync(dist, { recursive: true, force: true });

const common = {
  entryPoints: [join(root, "src/index.ts")],
  bundle: true,
  target: "es2020",
  logLevel: "warning",
  banner: { js: `/* keyport-client ${version} */` },
};

await Promise.all([
  build({ ...common, format: "esm", platform: "neutral", outfile: join(dist, "esm/index.js"), sourcemap: true }),
  build({ ...common, format: "cjs", platform: "node", outfile: join(dist, "cjs/index.cjs"), sourcemap: true }),
  build({
    ...common,
    format: "esm",
    platform: "browser",
    minify: true,
    banner: {},
    outfile: join(dist, "browser/keyport-client.min.js"),
  }),
]);

mkdirSync(join(root, "demo"), { recursive: true });
copyFileSync(join(dist, "browser/keyport-client.min.js"), join(root, "demo/keyport-client.js"));

if (!jsOnly) {
  // Declarations for the ESM build, then the same as .d.cts for the CommonJS build.
  const tsc = join(root, "node_modules/typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.json")], { stdio: "inherit" });
  for (const name of readdirSync(join(dist, "esm"))) {
    if (!name.endsWith(".d.ts")) continue;
    const text = readFileSync(join(dist, "esm", name), "utf8").replace(
      /(from\s+["']\.{1,2}\/[^"']+)\.js(["'])/g,
      "$1.cjs$2",
    );
    writeFileSync(join(dist, "cjs", name.replace(/\.d\.ts$/, ".d.cts")), text);
  }
}

const min = readFileSync(join(dist, "browser/keyport-client.min.js"));
const gz = gzipSync(min, { level: 9 });
console.log(
  `keyport-client ${version}: browser bundle ${min.length} bytes minified, ${gz.length} bytes gzipped ` +
    "(zlib; `npm run size` measures with gzip -9 as the README does)",
);
