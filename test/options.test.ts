// The options (README, "Options"): one table in server.ts, from which the
// defaults, the parser, --help and the README's table are made. These tests
// keep the three views of it in step, in-process.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  defaultConfig,
  defaults,
  helpText,
  optionSyntax,
  optionTable,
  parseCommandLine,
  type OptionRow,
} from "../server.ts";
import { optionsMarkdown } from "../scripts/options-table.ts";

const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

describe("one option table", () => {
  test("the README's table is the one made from optionTable (npm run options-table)", () => {
    const readme = readFileSync(join(repositoryRoot, "README.md"), "utf8");
    const start = readme.indexOf("\n", readme.indexOf("<!-- options:")) + 1;
    const end = readme.indexOf("<!-- /options -->");
    assert.ok(start > 0 && end > start, "the README has the <!-- options --> markers");
    assert.equal(
      readme.slice(start, end).trim(),
      optionsMarkdown(),
      "run `npm run options-table` and paste its output",
    );
  });

  test("--help lists every option, and nothing that is not one", () => {
    const listed = helpText
      .split("\n")
      .filter((line) => line.startsWith("  --"))
      .map((line) => line.trim().split(/\s{2,}/)[0]);
    assert.deepEqual(
      listed,
      optionTable.map((row) => optionSyntax(row)),
    );
  });

  test("every flag parses to its key; switches flip their default", () => {
    for (const row of optionTable as readonly OptionRow[]) {
      const text = row.value === "URL" ? "redis://x" : "x";
      const argv =
        row.type === "integer"
          ? [`--${row.flag}`, String(row.max ?? row.min)]
          : row.type === "text" || row.type === "list"
            ? [`--${row.flag}`, text]
            : [`--${row.flag}`];
      const parsed = parseCommandLine(argv) as Record<string, unknown>;
      const expected =
        row.type === "integer"
          ? (row.max ?? row.min)
          : row.type === "text"
            ? text
            : row.type === "list"
              ? ["x"]
              : row.type === "trace"
                ? "frames"
                : !row.default;
      assert.deepEqual(parsed[row.key], expected, row.flag);
    }
    assert.equal(parseCommandLine(["--trace=full"]).trace, "full");
    assert.deepEqual(parseCommandLine(["--allow-origin", "a, b", "--allow-origin", "c"]).allowedOrigins, [
      "a",
      "b",
      "c",
    ]);
    assert.deepEqual(parseCommandLine([]), {}, "nothing given: nothing set, the defaults apply");
  });

  test("integers are checked against their bounds, and the error names where the value came from", () => {
    assert.throws(
      () => parseCommandLine(["--deflate-level", "10"]),
      /^Error: --deflate-level takes a whole number from 1 to 9, not "10"$/,
    );
    assert.throws(() => parseCommandLine(["--port", "1.5"]), /--port takes a whole number from 0 to 65535/);
    assert.throws(
      () => parseCommandLine([], { PORT: "99999" }),
      /^Error: \$PORT takes a whole number from 0 to 65535, not "99999"$/,
    );
    assert.equal(parseCommandLine([], { PORT: "8080" }).port, 8080);
    assert.equal(parseCommandLine(["--port", "1"], { PORT: "8080" }).port, 1, "the flag wins over the environment");
    assert.throws(() => parseCommandLine(["--no-such-option"]), /Unknown option/);
  });

  test("the defaults and the default config come from the table", () => {
    for (const row of optionTable)
      assert.deepEqual((defaults as Record<string, unknown>)[row.key], row.default, row.key);
    assert.equal(defaultConfig.port, 5500);
    assert.equal("help" in defaultConfig, false, "--help is not a server setting");
  });
});
