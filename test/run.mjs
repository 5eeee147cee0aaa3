// `npm test`: `tsc --noEmit` and every test/*.test.ts file (with tsx, three
// files at a time), side by side rather than one after the other; fails when
// either fails. The type check's report is printed after the tests'.
//
// The files start heaviest first (by CPU time, measured on a 2-core machine),
// so that no long file starts last and runs alone at the end; files not in the
// list follow in alphabetical order. Arguments are passed on to node --test
// (e.g. --test-name-pattern).
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

const heaviestFirst = [
  "e2e-newcomer",
  "bench",
  "deploy",
  "redis-failures",
  "fuzz",
  "e2e",
  "abuse",
  "redis-scripts",
  "e2e-identity",
  "load",
  "runtimes",
  "redis-room",
  "cli",
  "e2e-large-room",
  "e2e-restart",
  "room",
];

const all = readdirSync(join(root, "test"))
  .filter((name) => name.endsWith(".test.ts"))
  .sort();
const rank = (name) => {
  const index = heaviestFirst.indexOf(name.slice(0, -".test.ts".length));
  return index === -1 ? heaviestFirst.length : index;
};
const files = all.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).map((name) => join("test", name));

function run(command, args, options = {}) {
  const child = spawn(command, args, { cwd: root, ...options });
  const exited = new Promise((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? (signal === null ? 1 : 128))),
  );
  return { child, exited };
}

const bin = (name) => join(root, "node_modules", ".bin", name);

let typecheckOutput = "";
const typecheck = run(bin("tsc"), ["--noEmit"], { stdio: ["ignore", "pipe", "pipe"] });
typecheck.child.stdout.on("data", (chunk) => (typecheckOutput += chunk));
typecheck.child.stderr.on("data", (chunk) => (typecheckOutput += chunk));

const tests = run(
  bin("tsx"),
  ["--test", "--test-concurrency=3", "--test-reporter=spec", ...process.argv.slice(2), ...files],
  { stdio: "inherit" },
);

const [testsCode, typecheckCode] = await Promise.all([tests.exited, typecheck.exited]);
console.log(typecheckCode === 0 ? "\ntsc --noEmit: no errors" : `\ntsc --noEmit failed:\n${typecheckOutput}`);
process.exit(testsCode !== 0 ? testsCode : typecheckCode);
