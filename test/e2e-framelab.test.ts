// End to end in Debian's Chromium (playwright-core): the frame lab on the real
// page against server.ts in this process. A learner opens the lab from the
// keyboard, picks the RFC's masked "Hello", decodes it and sees the message;
// picks an unmasked client frame and sees the violation and its close code;
// with the server gone, the Decode button says it needs the connection.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { cleanUp, testServer, useBrowser, waitForState } from "./fixtures/e2e-browser.ts";

const WAIT_MS = 10_000;

const launched = useBrowser();

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
