// bench/svg.ts — the ratio chart of the benchmark, as a standalone SVG file
// written by hand (no dependency): one row per measured ratio (ours/ws, and
// for echo ours/bun and on-bun/bun), a bar from 1.0 to the median ratio on a
// log scale, and a whisker from the smallest to the largest ratio of the rounds. Green where the ratio is in
// our favour (above 1 for "higher is better", below 1 for "lower is better").

export interface ChartRow {
  label: string;
  median: number;
  min: number;
  max: number;
  higherIsBetter: boolean;
  /** The same ratio per second of server CPU, when there is one: a diamond. */
  perCpu?: number;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function formatRatio(ratio: number): string {
  return ratio >= 10 ? ratio.toFixed(1) : ratio >= 1 ? ratio.toFixed(2) : ratio.toPrecision(2);
}

export function renderChart(rows: ChartRow[], title: string, subtitle: string): string {
  const width = 1040;
  const labelWidth = 440;
  const plotLeft = labelWidth + 10;
  const plotRight = width - 70;
  const top = 70;
  const rowHeight = 22;
  const height = top + rows.length * rowHeight + 80;

  const finite = rows
    .flatMap((row) => [row.min, row.max, row.median, row.perCpu ?? 1])
    .filter((value) => Number.isFinite(value) && value > 0);
  const lowest = Math.min(0.5, ...finite);
  const highest = Math.max(2, ...finite);
  const low = Math.floor(Math.log2(lowest));
  const high = Math.ceil(Math.log2(highest));
  const x = (ratio: number) =>
    plotLeft + ((Math.log2(Math.max(ratio, 2 ** low)) - low) / (high - low)) * (plotRight - plotLeft);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="16" y="44" fill="#555">${escapeXml(subtitle)}</text>`,
  );
  // Grid: one line per power of two; 1.0 stands out.
  for (let power = low; power <= high; power++) {
    const value = 2 ** power;
    const position = x(value).toFixed(1);
    const isOne = power === 0;
    parts.push(
      `<line x1="${position}" y1="${top - 8}" x2="${position}" y2="${top + rows.length * rowHeight}" stroke="${isOne ? "#333" : "#ddd"}" stroke-width="${isOne ? 1.5 : 1}"/>`,
      `<text x="${position}" y="${top + rows.length * rowHeight + 16}" text-anchor="middle" fill="#555">${formatRatio(value)}×</text>`,
    );
  }
  rows.forEach((row, index) => {
    const middle = top + index * rowHeight + rowHeight / 2;
    const arrow = row.higherIsBetter ? "↑" : "↓";
    parts.push(`<text x="${labelWidth}" y="${middle + 4}" text-anchor="end">${escapeXml(row.label)} ${arrow}</text>`);
    if (!Number.isFinite(row.median) || row.median <= 0) {
      parts.push(`<text x="${plotLeft + 4}" y="${middle + 4}" fill="#999">no result</text>`);
      return;
    }
    const favourable = row.higherIsBetter ? row.median >= 1 : row.median <= 1;
    const from = x(Math.min(1, row.median));
    const to = x(Math.max(1, row.median));
    parts.push(
      `<rect x="${from.toFixed(1)}" y="${middle - 7}" width="${Math.max(1, to - from).toFixed(1)}" height="14" fill="${favourable ? "#2e9e55" : "#d0473a"}" opacity="0.85"/>`,
    );
    if (Number.isFinite(row.min) && Number.isFinite(row.max) && row.max > row.min) {
      const left = x(row.min).toFixed(1);
      const right = x(row.max).toFixed(1);
      parts.push(
        `<line x1="${left}" y1="${middle}" x2="${right}" y2="${middle}" stroke="#222" stroke-width="1"/>`,
        `<line x1="${left}" y1="${middle - 4}" x2="${left}" y2="${middle + 4}" stroke="#222"/>`,
        `<line x1="${right}" y1="${middle - 4}" x2="${right}" y2="${middle + 4}" stroke="#222"/>`,
      );
    }
    if (row.perCpu !== undefined && Number.isFinite(row.perCpu) && row.perCpu > 0) {
      const at = x(row.perCpu);
      parts.push(
        `<path d="M ${at.toFixed(1)} ${middle - 6} l 5 6 l -5 6 l -5 -6 z" fill="#2f5fb3" stroke="#fff" stroke-width="0.8"><title>per CPU-second: ${formatRatio(row.perCpu)}×</title></path>`,
      );
    }
    const labelAt = Math.max(
      x(row.max),
      to,
      row.perCpu !== undefined && Number.isFinite(row.perCpu) && row.perCpu > 0 ? x(row.perCpu) + 4 : 0,
    );
    parts.push(
      `<text x="${(labelAt + 6).toFixed(1)}" y="${middle + 4}" fill="#222">${formatRatio(row.median)}×</text>`,
    );
  });
  parts.push(
    `<text x="16" y="${height - 44}" fill="#555">ours/ws: server.ts on Node / ws; ours/bun: server.ts on Node / Bun.serve; on-bun/bun: server.ts run by Bun / Bun.serve.</text>`,
    `<text x="16" y="${height - 28}" fill="#555">Log scale; bar: median of the rounds, whisker: min–max; ◆ the same work per second of server CPU (robust on a busy machine).</text>`,
    `<text x="16" y="${height - 12}" fill="#555">↑ higher is better, ↓ lower is better; green: in our favour, red: not.</text>`,
    "</svg>",
  );
  return parts.join("\n") + "\n";
}
