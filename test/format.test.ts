// The code is as the formatter leaves it (oxfmt, Prettier's style at line
// width 120, see .oxfmtrc.json): `npm run format` fixes what this finds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { repositoryRoot } from "./support/spawn.ts";

test("every .ts, .mjs and .json file is formatted (npm run format)", () => {
  const oxfmt = join(repositoryRoot, "node_modules", "oxfmt", "bin", "oxfmt");
  const result = spawnSync(process.execPath, [oxfmt, "--check"], { cwd: repositoryRoot, encoding: "utf8" });
  assert.equal(result.status, 0, `not formatted; run npm run format:\n${result.stdout}${result.stderr}`);
});
