// The static page: exactly GET/HEAD / and /client.js, and nothing else on
// disk, whatever the request target tries. Requests are written by hand on a
// TCP socket (RawClient with a raw request) so that no client library
// normalises the target first; server.ts runs in this process.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { useServer } from "./support/in-process.ts";
import { RawClient } from "./support/raw-client.ts";
import { repositoryRoot } from "./support/spawn.ts";

interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Sends `method target HTTP/1.1` with Connection: close and reads the whole answer. */
async function rawRequest(
  port: number,
  method: string,
  target: string,
  extraHeaders: string[] = [],
): Promise<HttpResponse> {
  const request = [
    `${method} ${target} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Connection: close",
    ...extraHeaders,
    "",
    "",
  ];
  const client = await RawClient.open(port, { request: request.join("\r\n"), timeoutMs: 5000 });
  await client.waitForClose(5000);
  assert.ok(client.handshake, `no HTTP response to ${method} ${target}`);
  return { status: client.handshake.status, headers: client.handshake.headers, body: client.handshake.bodyBytes };
}

const files = [
  { path: "/", file: "client.html", type: "text/html; charset=utf-8" },
  { path: "/client.js", file: "client.js", type: "text/javascript; charset=utf-8" },
];

const server = useServer();

describe("the two files", () => {
  for (const { path, file, type } of files) {
    test(`GET ${path} serves ${file} as ${type} with Cache-Control: no-cache`, async () => {
      const response = await rawRequest(server().port, "GET", path);
      assert.equal(response.status, 200);
      assert.equal(response.headers["content-type"], type);
      assert.equal(response.headers["cache-control"], "no-cache");
      const expected = readFileSync(join(repositoryRoot, file));
      assert.equal(Number(response.headers["content-length"]), expected.length);
      assert.ok(response.body.equals(expected), `the body is ${file}, byte for byte`);
    });

    test(`HEAD ${path}: the same headers, no body`, async () => {
      const get = await rawRequest(server().port, "GET", path);
      const head = await rawRequest(server().port, "HEAD", path);
      assert.equal(head.status, 200);
      assert.equal(head.body.length, 0, "no body after the headers");
      for (const name of ["content-type", "content-length", "cache-control"]) {
        assert.equal(head.headers[name], get.headers[name], `${name} as for GET`);
      }
    });

    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      test(`${method} ${path} is 405 with Allow`, async () => {
        const response = await rawRequest(server().port, method, path, ["Content-Length: 0"]);
        assert.equal(response.status, 405);
        const allowed = (response.headers["allow"] ?? "")
          .split(",")
          .map((value) => value.trim())
          .sort();
        assert.deepEqual(allowed, ["GET", "HEAD"]);
      });
    }
  }

  test("a query string does not change the file (the page is opened with ?options)", async () => {
    const page = await rawRequest(server().port, "GET", "/?name=%E5%B0%8F%E6%98%8E&lang=en");
    assert.equal(page.status, 200);
    assert.equal(page.headers["content-type"], "text/html; charset=utf-8");
    const script = await rawRequest(server().port, "GET", "/client.js?v=2");
    assert.equal(script.status, 200);
    assert.equal(script.headers["content-type"], "text/javascript; charset=utf-8");
  });
});

describe("nothing else", () => {
  const sourceSnippets = ["WEBSOCKET_GUID", '"devDependencies"', "root:", "startServer"];
  // PORT is replaced by the server's port when the request is made.
  const targets = [
    "/client.ts",
    "/server.ts",
    "/package.json",
    "/package-lock.json",
    "/tsconfig.json",
    "/README.md",
    "/client.html",
    "/index.html",
    "/test/helpers.ts",
    "/.git/config",
    "/node_modules/ws/package.json",
    "/../server.ts",
    "/%2e%2e/server.ts",
    "/%2E%2E/server.ts",
    "/..%2fserver.ts",
    "/%2fserver.ts",
    "//etc/passwd",
    "/../../../../etc/passwd",
    "/client.js/..",
    "/client.js/../server.ts",
    "/./client.js",
    "/client.js/",
    "/client.js%00",
    "/client.js;.ts",
    "/%63lient.js",
    "/CLIENT.JS",
    "/Client.js",
    "/favicon.ico",
    "*",
    "http://127.0.0.1:PORT/",
    "http://127.0.0.1:PORT/client.js",
    "http://127.0.0.1:PORT/server.ts",
    "http://127.0.0.1:PORT/../server.ts",
  ];

  for (const label of targets) {
    test(`GET ${label} is 404 and shows no file`, async () => {
      const target = label.replace("PORT", String(server().port));
      const response = await rawRequest(server().port, "GET", target);
      assert.equal(response.status, 404);
      const body = response.body.toString("utf8");
      for (const snippet of sourceSnippets) assert.ok(!body.includes(snippet), `the body leaks ${snippet}`);
      assert.ok(response.body.length < 1024, "a short message, not a file");
    });
  }

  test("HEAD and POST on a path that is not served are 404 too", async () => {
    const head = await rawRequest(server().port, "HEAD", "/server.ts");
    assert.equal(head.status, 404);
    assert.equal(head.body.length, 0);
    const post = await rawRequest(server().port, "POST", "/server.ts", ["Content-Length: 0"]);
    assert.equal(post.status, 404);
  });
});
