// A private X display (Xvfb) for tests that need a real, headed browser window: its own
// prompts only exist there. `xdotool` acts as the person at the keyboard and mouse.
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Start Xvfb on a free display (`-displayfd`), `width`x`height`. Resolves to
 * `{ display, env, xdotool(...args), screenshot(path), stop() }`.
 */
export async function startXvfb({ width = 1100, height = 800 } = {}) {
  const child = spawn("Xvfb", ["-displayfd", "3", "-screen", "0", `${width}x${height}x24`, "-nolisten", "tcp"], {
    stdio: ["ignore", "ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const display = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`Xvfb did not start in 10 s: ${stderr}`)), 10_000);
    child.stdio[3].on("data", (d) => {
      out += d;
      if (out.includes("\n")) {
        clearTimeout(timer);
        resolve(`:${out.trim()}`);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`Xvfb exited (${code}): ${stderr} (apt-get install xvfb)`));
    });
  });
  const env = { ...process.env, DISPLAY: display };
  delete env.WAYLAND_DISPLAY;
  return {
    display,
    env,
    xdotool: (...args) => run("xdotool", args.map(String), { env }),
    screenshot: (path) => run("import", ["-display", display, "-window", "root", path]),
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}
