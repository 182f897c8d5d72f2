// Serve test pages over HTTP on 127.0.0.1: the demo page as a web site would host it, or
// hand-written pages. Browsers reach them under a made-up public name (see the browser tests).
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { join } from "node:path";
import { JS_CLIENT } from "./agent.mjs";

/** The host name a test page uses when it must look like a public web site. */
export const PUBLIC_HOST = "public.test";

/**
 * Serve `routes` (`{ "/path": { type, body } }`) on 127.0.0.1:`port` (0: any). Resolves to
 * `{ port, close() }`.
 */
export async function servePages(routes, port = 0) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const route = routes[path];
    if (!route) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": route.type, "cache-control": "no-store" }).end(route.body);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  return {
    port: server.address().port,
    async close() {
      // Browsers keep idle keep-alive (or preconnected) sockets: close them too.
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The demo page's files, at the paths the agent serves them on (`/demo/…`). */
export async function demoRoutes() {
  const demo = join(JS_CLIENT, "demo");
  const file = async (name, type) => ({ type, body: await readFile(join(demo, name)) });
  const index = await file("index.html", "text/html; charset=utf-8");
  return {
    "/demo": index,
    "/demo/": index,
    "/demo/demo.js": await file("demo.js", "text/javascript"),
    "/demo/demo.css": await file("demo.css", "text/css"),
    "/demo/keyport-client.js": await file("keyport-client.js", "text/javascript"),
  };
}
