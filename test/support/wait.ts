// Waiting for a condition, never for a fixed time: every wait here is
// bounded, and ends as soon as what it waits for is true.

/** Polls `condition` every 10 ms until it is true, or throws after timeoutMs.
 * `what` names what was awaited; as a function it is asked only then, so that
 * the error can tell how far things got. `poke`, if given, runs before each
 * check (to ask again: "accepted yet?"). */
export async function waitUntil(
  condition: () => boolean,
  timeoutMs = 5_000,
  what: string | (() => string) = "condition",
  poke?: () => unknown,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (poke !== undefined) await poke();
    if (condition()) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "function" ? what() : what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** `promise`, or a rejection naming `what` after timeoutMs. */
export function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
