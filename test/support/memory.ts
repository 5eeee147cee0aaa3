// The one reader of a process's memory, from /proc/<pid>/status (Linux).
// Tests use rssOf and RssSampler, which fail loudly when the figure cannot
// be read: a memory bound that silently reads 0 proves nothing. The scripts
// print figures only, and use readProcessMemory, which may say "unknown".
// For a server in the test's own process, retainedBytes says what is still
// held after a full garbage collection: what a server that buffers keeps,
// without the garbage that RSS also counts.
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

export const MB = 1024 * 1024;

export interface ProcessMemory {
  /** Resident set size now, in bytes. */
  rss: number;
  /** The highest resident set size so far (VmHWM), in bytes. */
  peakRss: number;
}

/** undefined when the process is gone or /proc is not there. */
export function readProcessMemory(pid: number | undefined): ProcessMemory | undefined {
  if (pid === undefined) return undefined;
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const field = (name: string): number | undefined => {
    const match = status.match(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, "m"));
    return match ? Number(match[1]) * 1024 : undefined;
  };
  const rss = field("VmRSS");
  if (rss === undefined) return undefined;
  return { rss, peakRss: field("VmHWM") ?? rss };
}

/** The resident set size of `pid` in bytes; throws when it cannot be read. */
export function rssOf(pid: number | undefined): number {
  const memory = readProcessMemory(pid);
  if (memory === undefined) {
    throw new Error(
      `cannot read the memory of process ${pid} from /proc/${pid}/status: ` +
        "this memory check needs Linux's /proc and a live process",
    );
  }
  return memory.rss;
}

export function megabytes(bytes: number): string {
  return `${(bytes / MB).toFixed(1)} MB`;
}

/** Samples a process's RSS every intervalMs until stopped; remembers the highest. */
export class RssSampler {
  peak = 0;
  samples = 0;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly pid: number | undefined;

  /** `required`: throw now if the RSS cannot be read (what a test wants). */
  constructor(pid: number | undefined, intervalMs = 100, options: { required?: boolean } = {}) {
    this.pid = pid;
    if (options.required) this.peak = rssOf(pid);
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number | undefined {
    const memory = readProcessMemory(this.pid);
    if (memory === undefined) return undefined;
    this.samples++;
    this.peak = Math.max(this.peak, memory.rss);
    return memory.rss;
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

let collectGarbage: (() => void) | undefined;

/** JavaScript heap and Buffer memory still in use after a full garbage
 * collection, in bytes (this process). */
export function retainedBytes(): number {
  if (collectGarbage === undefined) {
    setFlagsFromString("--expose-gc");
    collectGarbage = runInNewContext("gc") as () => void;
    if (typeof collectGarbage !== "function") throw new Error("cannot force a garbage collection (--expose-gc)");
  }
  collectGarbage();
  collectGarbage();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.external;
}
