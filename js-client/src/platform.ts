// Which PKCS #11 library to ask for: the one configured for the operating system we run on.

/** Operating systems a module can be configured for. */
export type OsName = "linux" | "mac" | "win";

/**
 * The PKCS #11 library per operating system, e.g.
 * `{ linux: "/usr/lib/softhsm/libsofthsm2.so", mac: "/usr/local/lib/softhsm/libsofthsm2.so",
 *    win: "C:\\SoftHSM2\\lib\\softhsm2-x64.dll" }`.
 * The path must be on the agent's allowlist. With no entry for the running OS, no `module` is sent
 * and the agent uses its default library.
 */
export interface ModuleConfig {
  linux?: string;
  mac?: string;
  win?: string;
}

/** The OS from a Node `process.platform` value. */
export function osFromNodePlatform(platform: string): OsName | undefined {
  switch (platform) {
    case "linux":
      return "linux";
    case "darwin":
      return "mac";
    case "win32":
      return "win";
    default:
      return undefined;
  }
}

/**
 * The OS from what a browser reports (`navigator.userAgentData.platform`, e.g. "Windows", "macOS",
 * "Linux"; or `navigator.platform`, e.g. "Win32", "MacIntel", "Linux x86_64"; or the user agent).
 * Android, iOS and ChromeOS give `undefined`: the agent does not run there.
 */
export function osFromBrowserPlatform(platform: string): OsName | undefined {
  const p = platform.toLowerCase();
  if (/android|iphone|ipad|ipod|\bcros\b|chrom(e|ium) os/.test(p)) return undefined;
  if (p.startsWith("win") || p.includes("windows")) return "win";
  if (p.startsWith("mac") || p.includes("macos") || p.includes("mac os") || p.includes("darwin")) return "mac";
  if (p.includes("linux") || p.includes("x11")) return "linux";
  return undefined;
}

interface Env {
  process?: { versions?: { node?: string }; platform?: string };
  navigator?: { userAgentData?: { platform?: string }; platform?: string; userAgent?: string };
}

/** True when running in Node (or a runtime that mimics its `process`). */
export function isNode(env: Env = globalThis as Env): boolean {
  return typeof env.process?.versions?.node === "string";
}

/** The operating system this code runs on, or `undefined` when it cannot tell. */
export function detectOs(env: Env = globalThis as Env): OsName | undefined {
  if (isNode(env) && typeof env.process?.platform === "string") {
    return osFromNodePlatform(env.process.platform);
  }
  const nav = env.navigator;
  if (!nav) return undefined;
  const hint = nav.userAgentData?.platform || nav.platform || nav.userAgent || "";
  return osFromBrowserPlatform(hint);
}

/** The module path to send for `os`, or `undefined` to let the agent use its default. */
export function moduleFor(config: ModuleConfig | undefined, os: OsName | undefined): string | undefined {
  if (!config || !os) return undefined;
  const path = config[os];
  return typeof path === "string" && path !== "" ? path : undefined;
}
