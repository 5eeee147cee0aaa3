// End to end in Debian's Chromium (playwright-core): the frame inspector on
// the real page (client.html + client.js) against server.ts in this process.
// A learner opens the inspector, types "hi", and sees it leave masked and come
// back unmasked; the heartbeat's pings and pongs show too, with their round
// trip, and so do the server's protocol-level pings, which no JavaScript sees.
// Chromium compresses what it sends: the server's note under that frame shows
// the text it inflated, and under a short broadcast why it went uncompressed.
// Then the frame lab beside it: a learner opens the lab from the keyboard,
// picks the RFC's masked "Hello", decodes it and sees the message; picks an
// unmasked client frame and sees the violation and its close code; with the
// server gone, the Decode button says it needs the connection.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { cleanUp, testServer, useBrowser, waitForState } from "./fixtures/e2e-browser.ts";
import { useServer } from "./support/in-process.ts";

/** Every wait is bounded by this; on a busy two-core machine a frame can take a while. */
const WAIT_MS = 10_000;

const launched = useBrowser();
// The server pings every 2 s instead of every 30 s, so its protocol-level pings show quickly.
const live = useServer({ keepaliveIntervalMs: 2000, keepaliveTimeoutMs: 1000 });

/** One entry of #inspector-frames as a test reads it: its data attributes, head line and labelled fields. */
interface ShownEntry {
  direction: string;
  opcode: string | null;
  kind: string | null;
  head: string;
  fields: Record<string, string>;
  lines: string;
}

function readEntries(page: Page): Promise<ShownEntry[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLLIElement>("#inspector-frames > li")].map((item) => ({
      direction: item.dataset.direction ?? "",
      opcode: item.dataset.opcode ?? null,
      kind: item.dataset.kind ?? null,
      head: item.querySelector(".frame-head")?.textContent ?? "",
      fields: Object.fromEntries(
        [...item.querySelectorAll(".frame-fields > div")].map((row) => [
          row.querySelector("dt")?.textContent ?? "",
          row.querySelector("dd")?.textContent ?? "",
        ]),
      ),
      lines: item.querySelector(".frame-lines")?.textContent ?? "",
    })),
  );
}

/** Polls the panel until some entry passes `check`; fails with what the panel showed after WAIT_MS. */
async function waitForEntry(page: Page, what: string, check: (entry: ShownEntry) => boolean): Promise<ShownEntry> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const entries = await readEntries(page);
    const found = entries.find(check);
    if (found !== undefined) return found;
    if (Date.now() > deadline) {
      const shown = entries
        .map((entry) => `${entry.direction} ${entry.opcode ?? entry.kind ?? ""}: ${entry.head}`)
        .join("\n");
      throw new Error(`no inspector entry for ${what} within ${WAIT_MS} ms; the panel shows:\n${shown}`);
    }
    await page.waitForTimeout(100);
  }
}

describe("the frame inspector in Chromium", { timeout: 90_000 }, () => {
  test(
    '"hi" leaves masked and comes back unmasked; heartbeats, round trips and the handshake show',
    { timeout: 80_000 },
    async () => {
      const browser = launched();
      const server = live();
      // English words, whatever the machine's language; the assertions read protocol fields mostly.
      const context = await browser.newContext({ locale: "en-US", viewport: { width: 390, height: 800 } });
      try {
        const page = await context.newPage();
        const errors: string[] = [];
        page.on("pageerror", (error) => errors.push(error.message));
        await page.goto(`${server.httpUrl}/?heartbeat=1000`, { timeout: WAIT_MS });
        await page.waitForFunction(() => window.chatClient?.state === "connected", undefined, { timeout: WAIT_MS });

        // Closed by default.
        const toggle = page.locator("#inspector-toggle");
        assert.equal(await toggle.getAttribute("aria-expanded"), "false");
        assert.equal(await page.locator("#inspector").isHidden(), true);

        await toggle.click({ timeout: WAIT_MS });
        assert.equal(await toggle.getAttribute("aria-expanded"), "true");
        assert.equal(await page.locator("#inspector").isVisible(), true);
        await waitForEntry(
          page,
          "the inspector switched on",
          (entry) => entry.direction === "client" && entry.kind === "inspect",
        );

        await page.fill("#input", "hi", { timeout: WAIT_MS });
        await page.press("#input", "Enter", { timeout: WAIT_MS });

        // Page → server: masked, with a key, and "hi" in it.
        const out = await waitForEntry(
          page,
          'the page sending "hi"',
          (entry) =>
            entry.direction === "received" &&
            entry.opcode === "text" &&
            (entry.fields.text ?? "").includes('"text":"hi"'),
        );
        assert.match(out.fields.MASK ?? "", /^1 /, "MASK=1");
        assert.match(out.fields["masking key"] ?? "", /^[0-9a-f]{2}( [0-9a-f]{2}){3}$/, "a 4-byte masking key");
        assert.ok(
          out.fields.masked !== undefined && out.fields.unmasked !== undefined,
          "the bytes both masked and unmasked",
        );
        assert.match(out.fields.length ?? "", /7-bit/);
        assert.match(out.head, /page → server/);
        assert.match(out.head, /chat message "hi"/);

        // Chromium compressed it (RSV1): the server's note says so, and gives the text it inflated.
        const inflated = await waitForEntry(
          page,
          'the server\'s note: "hi" inflated',
          (entry) =>
            entry.direction === "received" &&
            /inflate to \d+/.test(entry.fields.deflate ?? "") &&
            (entry.fields.text ?? "").includes('"text":"hi"'),
        );
        assert.equal(inflated.fields["RSV1-3"], "1 0 0 · RSV1=1: compressed with permessage-deflate (RFC 7692 §6)");
        assert.match(inflated.fields.deflate ?? "", /^\d+ bytes of deflate data inflate to \d+ \(\d+%\)/);
        assert.match(inflated.head, /B inflated\) · chat message "hi"/);

        // Server → page: the broadcast, unmasked.
        const back = await waitForEntry(
          page,
          "the server's broadcast of hi",
          (entry) =>
            entry.direction === "sent" &&
            entry.opcode === "text" &&
            (entry.fields.text ?? "").includes('"type":"message"') &&
            (entry.fields.text ?? "").includes('"text":"hi"'),
        );
        assert.match(back.fields.MASK ?? "", /^0 /, "MASK=0");
        assert.equal(back.fields["masking key"], undefined);
        assert.match(back.fields.payload ?? "", /^7b 22/, "the payload's bytes, starting with {\"");
        assert.match(back.head, /server → page/);
        // Short, so the server sent it plainly; its note says why, where RSV1-3 are explained.
        await waitForEntry(
          page,
          "the broadcast's note: sent uncompressed",
          (entry) =>
            entry.direction === "sent" &&
            (entry.fields.text ?? "").includes('"type":"message"') &&
            (entry.fields["RSV1-3"] ?? "").startsWith("0 0 0 · sent uncompressed: shorter than 1 KiB"),
        );

        // The heartbeat: the page's JSON ping, the server's JSON pong, and the round trip between them.
        await waitForEntry(
          page,
          "a heartbeat ping",
          (entry) => entry.direction === "received" && (entry.fields.text ?? "").includes('"type":"ping"'),
        );
        await waitForEntry(
          page,
          "a heartbeat pong",
          (entry) => entry.direction === "sent" && (entry.fields.text ?? "").includes('"type":"pong"'),
        );
        const rtt = await waitForEntry(
          page,
          "a round-trip time",
          (entry) => entry.direction === "client" && entry.kind === "rtt",
        );
        assert.match(rtt.head, /heartbeat round trip \d+ ms/);

        // The server's protocol-level ping (opcode 0x9) and the browser's own pong (0xA, masked like every page frame).
        await waitForEntry(
          page,
          "the server's protocol ping",
          (entry) => entry.direction === "sent" && entry.opcode === "ping",
        );
        const pong = await waitForEntry(
          page,
          "the browser's protocol pong",
          (entry) => entry.direction === "received" && entry.opcode === "pong",
        );
        assert.match(pong.fields.MASK ?? "", /^1 /);

        // A reload keeps it open, and this time the socket asked for it in its URL: the handshake shows.
        await page.reload({ timeout: WAIT_MS });
        await page.waitForFunction(() => window.chatClient?.state === "connected", undefined, { timeout: WAIT_MS });
        assert.equal(await page.locator("#inspector-toggle").getAttribute("aria-expanded"), "true");
        const handshake = await waitForEntry(page, "the opening handshake", (entry) => entry.direction === "handshake");
        assert.match(handshake.lines, /GET \/\?.*inspect=1/);
        assert.match(handshake.lines, /Sec-WebSocket-Accept: /);
        assert.match(handshake.lines, /101 Switching Protocols/);

        // Clear empties the list (of what was in it: heartbeats go on arriving); closing hides the panel.
        const before = await page.evaluate(() => {
          const items = document.querySelectorAll<HTMLLIElement>("#inspector-frames > li");
          for (const item of items) item.dataset.e2eBeforeClear = "1";
          return items.length;
        });
        assert.ok(before > 0);
        await page.click("#inspector-clear", { timeout: WAIT_MS });
        assert.equal(
          await page.locator("#inspector-frames > li[data-e2e-before-clear]").count(),
          0,
          `${before} entries cleared`,
        );
        await page.click("#inspector-toggle", { timeout: WAIT_MS });
        assert.equal(await page.locator("#inspector").isHidden(), true);
        assert.equal(await page.locator("#inspector-toggle").getAttribute("aria-expanded"), "false");

        // Own messages are labelled 我 in Chinese, "me" in English.
        const badge = page.locator("#messages li.mine .me-badge").first();
        assert.equal(await badge.textContent({ timeout: WAIT_MS }), "me");

        assert.deepEqual(errors, [], "no uncaught exceptions in the page");
      } finally {
        await context.close();
      }
    },
  );
});

// ── The frame lab ──────────────────────────────────────────────────────────

/** Waits until the lab's status names `outcome` (data-outcome), and returns the walk the panel shows. */
async function waitForOutcome(page: Page, outcome: string): Promise<{ status: string; walk: string }> {
  await page.locator(`#framelab-status[data-outcome="${outcome}"]`).waitFor({ timeout: WAIT_MS });
  return {
    status: (await page.locator("#framelab-status").textContent()) ?? "",
    walk: (await page.locator("#framelab-output").textContent()) ?? "",
  };
}

describe("the frame lab in Chromium", { timeout: 60_000 }, () => {
  test('the masked "Hello" decodes to its message; an unmasked client frame is a violation with 1002', async (t) => {
    t.after(cleanUp);
    const server = await testServer();
    const context = await launched().newContext({ locale: "en-US" });
    t.after(() => context.close());
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(`${server.httpUrl}/`);
    await waitForState(page, "connected");

    // Closed by default; opened from the keyboard, like the inspector.
    const toggle = page.locator("#framelab-toggle");
    assert.equal(await toggle.textContent(), "Frame lab");
    assert.equal(await toggle.getAttribute("aria-expanded"), "false");
    assert.equal(await page.locator("#framelab").isHidden(), true);
    await toggle.focus();
    await page.keyboard.press("Enter");
    assert.equal(await toggle.getAttribute("aria-expanded"), "true");
    await page.locator("#framelab").waitFor({ state: "visible" });
    assert.equal(await page.getByRole("region", { name: "Frame lab" }).count(), 1, "a labelled region");

    await page.getByLabel("Examples").selectOption("hello");
    assert.equal(await page.getByLabel("Bytes (hex)").inputValue(), "81 85 37 fa 21 3d 7f 9f 4d 51 58");
    assert.equal(await page.getByLabel("client frames (masked)").isChecked(), true);
    await page.getByRole("button", { name: "Decode", exact: true }).click();
    const hello = await waitForOutcome(page, "valid");
    assert.match(hello.status, /valid/);
    assert.ok(hello.walk.includes('→ message: text "Hello"'), hello.walk);
    assert.ok(hello.walk.includes("state maskKey    37 fa 21 3d"), hello.walk);

    await page.getByLabel("Examples").selectOption("unmasked-client");
    await page.getByRole("button", { name: "Decode", exact: true }).click();
    const broken = await waitForOutcome(page, "violation");
    assert.match(broken.status, /violation/);
    assert.ok(broken.walk.includes("✗ unmasked_frame"), broken.walk);
    assert.ok(broken.walk.includes("close code 1002"), broken.walk);
    assert.equal(await page.locator("#framelab-output .lab-violation").count(), 1, "the broken rule is marked");

    // Bytes typed by hand, read as a server's: the 64 KiB header alone, and the decoder waits.
    await page.getByLabel("Bytes (hex)").fill("82 7f 00 00 00 00 00 01 00 00");
    await page.getByLabel("server frames (unmasked)").check();
    await page.getByRole("button", { name: "Decode", exact: true }).click();
    const waiting = await waitForOutcome(page, "incomplete");
    assert.match(waiting.status, /waiting for more bytes/);

    // Not hex: the server's reason, in the lab.
    await page.getByLabel("Bytes (hex)").fill("81 zz");
    await page.getByRole("button", { name: "Decode", exact: true }).click();
    const refused = await waitForOutcome(page, "refused");
    assert.match(refused.status, /not hex/);

    // A reload keeps it open; without the server, Decode says it needs the connection and sends nothing.
    await page.reload();
    await waitForState(page, "connected");
    assert.equal(await page.locator("#framelab").isVisible(), true);
    await server.stop();
    await waitForState(page, "reconnecting");
    const decode = page.locator("#framelab-decode");
    await page.waitForFunction(() => document.getElementById("framelab-decode")?.textContent !== "Decode");
    assert.equal(await decode.textContent(), "Decode: needs the connection");
    assert.equal(await decode.getAttribute("aria-disabled"), "true");

    // Closed again from the toggle.
    await toggle.click();
    assert.equal(await page.locator("#framelab").isHidden(), true);
    assert.deepEqual(errors, [], "no uncaught exceptions in the page");
  });
});
