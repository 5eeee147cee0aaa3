// Memory of another process, from /proc/<pid>/status (Linux only).
import { readFileSync } from "node:fs";

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

export function megabytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** Samples a process's RSS every intervalMs until stopped; remembers the highest. */
export class RssSampler {
  peak = 0;
  samples = 0;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly pid: number | undefined;

  constructor(pid: number | undefined, intervalMs = 100) {
    this.pid = pid;
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
