// The README's table of options, made from server.ts's optionTable: run
// `npm run options-table` and paste its output between the README's
// <!-- options --> markers. test/options.test.ts fails while they differ.
import { isProgram, optionSyntax, optionTable, shownDefault } from "../server.ts";

export function optionsMarkdown(): string {
  const rows = optionTable.map((row) => {
    const environment = "env" in row ? ` (or \`$${row.env}\`)` : "";
    const meaning = row.help.charAt(0).toUpperCase() + row.help.slice(1);
    return `| \`${optionSyntax(row)}\`${environment} | ${shownDefault(row) ?? "—"} | ${meaning}. |`;
  });
  return ["| Option | Default | Meaning |", "|---|---|---|", ...rows].join("\n");
}

if (isProgram(import.meta)) console.log(optionsMarkdown());
