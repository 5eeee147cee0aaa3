// The code is as the formatter leaves it (prettier, line width 120, see
// .prettierrc.json): `npm run format` fixes what this finds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

test("every .ts, .mjs and .json file is formatted (npm run format)", () => {
  const prettier = join(root, "node_modules", "prettier", "bin", "prettier.cjs");
  // --cache: a file whose content and the config are unchanged since it last passed is not formatted again
  // (node_modules/.cache/prettier); a fresh clone checks everything.
  const result = spawnSync(process.execPath, [prettier, "--check", "--cache", "**/*.{ts,mjs,json}"], {
    cwd: root,
    encoding: "utf8",
  });
  assert.equal(result.status, 0, `not formatted; run npm run format:\n${result.stdout}${result.stderr}`);
});
