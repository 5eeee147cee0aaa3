// A small seeded pseudo-random generator (sfc32, seeded through splitmix32),
// so that every fuzz case, chunking, proxy cut and load pattern can be
// replayed exactly from a seed. Math.random is never used by the fuzzer.
import { Buffer } from "node:buffer";

/** splitmix32: spreads one 32-bit number over the whole state. */
function splitmix32(state: { value: number }): number {
  state.value = (state.value + 0x9e3779b9) | 0;
  let z = state.value;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a over a string: turns a textual seed into a number. */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The seed of case `index` of a run seeded with `seed`: each case can be
 * regenerated alone, without replaying the ones before it. */
export function caseSeed(seed: number, index: number): number {
  const state = { value: (seed ^ Math.imul(index + 1, 0x27d4eb2d)) | 0 };
  splitmix32(state);
  return splitmix32(state);
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number | string) {
    const state = { value: typeof seed === "string" ? hashString(seed) : seed | 0 };
    this.a = splitmix32(state);
    this.b = splitmix32(state);
    this.c = splitmix32(state);
    this.d = splitmix32(state);
    for (let round = 0; round < 12; round++) this.uint32();
  }

  /** sfc32: a uniformly distributed 32-bit unsigned integer. */
  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.uint32() / 2 ** 32;
  }

  /** An integer in [0, count). `count` at most 2^32. */
  below(count: number): number {
    return Math.floor(this.float() * count);
  }

  /** An integer in [min, max], both included. */
  range(min: number, max: number): number {
    return min + this.below(max - min + 1);
  }

  chance(probability: number): boolean {
    return this.float() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.below(items.length)]!;
  }

  /** Picks by weight: `[[weight, value], ...]`. */
  weighted<T>(choices: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [weight] of choices) total += weight;
    let roll = this.float() * total;
    for (const [weight, value] of choices) {
      roll -= weight;
      if (roll < 0) return value;
    }
    return choices[choices.length - 1]![1];
  }

  bytes(count: number): Buffer {
    const result = Buffer.allocUnsafe(count);
    let index = 0;
    for (; index + 4 <= count; index += 4) {
      // A word's four bytes, least significant first (writeUInt32LE, without its checks).
      const word = this.uint32();
      result[index] = word & 0xff;
      result[index + 1] = (word >>> 8) & 0xff;
      result[index + 2] = (word >>> 16) & 0xff;
      result[index + 3] = word >>> 24;
    }
    for (; index < count; index++) result[index] = this.uint32() & 0xff;
    return result;
  }

  /** A 64-bit unsigned value, as a bigint. */
  uint64(): bigint {
    return (BigInt(this.uint32()) << 32n) | BigInt(this.uint32());
  }
}
