// bench/format.ts — how the benchmark names counts and sizes, shared by its
// report (bench.ts) and the README's table (readme-table.ts).

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** 10000 → "10,000". */
export function thousands(value: number): string {
  return value.toLocaleString("en-US");
}

/** 16 → "16 B", 1024 → "1 KiB", 1048576 → "1 MiB". */
export function sizeName(size: number): string {
  return size >= MiB ? `${size / MiB} MiB` : size >= KiB ? `${size / KiB} KiB` : `${size} B`;
}
