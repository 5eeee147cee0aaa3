// Installs the runtime matrix (Node 22, Node 24, Deno, Bun) that test/runtimes.test.ts
// starts server.ts under, once, from its own pinned package.json and lock file.
// Plain JavaScript so it runs before anything else is installed.
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const wanted = ["node22/bin/node", "node24/bin/node", "deno/package.json", "bun/package.json"];
const missing = wanted.filter((path) => !existsSync(join(here, "node_modules", path)));
if (missing.length > 0) {
  console.log(`Installing the runtime matrix in test/runtimes (missing: ${missing.join(", ")})`);
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const verb = existsSync(join(here, "package-lock.json")) ? "ci" : "install";
  execFileSync(npm, [verb, "--no-audit", "--no-fund", "--loglevel=error"], { cwd: here, stdio: "inherit" });
}
