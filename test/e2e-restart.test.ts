// End to end in Debian's Chromium: the epoch (README, "Resume and epoch").
// The server that is stopped (SIGTERM) or killed (SIGKILL) is a process; the
// one that takes its place on the same port runs in this process.
// A server restarted without its history counts from seq 1 again; a page that
// had seen seq 6 must still show the new seqs 1, 2, 3... and mark the gap once.
// A server restarted with the same --history keeps its epoch: no gap at all.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  assertSettled,
  clientState,
  useBrowser,
  readLines,
  readMessages,
  recordStates,
  waitForConfirmed,
  waitForState,
  waitForStateSequence,
  type ShownLine,
  cleanUp,
  defer,
  testMember,
  testPage,
  testProcess,
  testServer,
} from "./fixtures/e2e-browser.ts";
import type { ChatClient } from "./support/chat-client.ts";
import { freePort } from "./support/spawn.ts";

const browser = useBrowser();

const server = testServer;

const page = (url: string) => testPage(browser(), url);

const member = testMember;

/** Says each text and waits until the member's own copy of each came back, in order. */
async function sayAll(from: ChatClient, texts: readonly string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const text of texts) {
    ids.push(from.sayText(text));
    await from.waitForMessage(text);
  }
  return ids;
}

function gapCount(lines: readonly ShownLine[]): number {
  return lines.filter((line) => line.kind === "notice" && line.notice === "gap").length;
}

describe("the page across server restarts (epoch)", { timeout: 80_000 }, () => {
  test(
    "restart WITHOUT --history: the new seqs 1..5 all show, after exactly one gap notice",
    { timeout: 45_000 },
    async (t) => {
      t.after(cleanUp);
      const port = await freePort();
      const first = await testProcess(["--port", String(port)]);
      const p = await page(`http://127.0.0.1:${port}/`);

      const oldMember = await member(port, "before");
      const oldTexts = Array.from({ length: 6 }, (_, index) => `old epoch ${index + 1}`);
      await sayAll(oldMember, oldTexts);
      await waitForConfirmed(p.page, oldTexts);
      const oldState = await clientState(p.page);
      assert.equal(oldState.lastSeq, 6);
      assert.ok(oldState.epoch !== null);
      oldMember.destroy();

      await recordStates(p.page);
      assert.equal(await first.stop("SIGTERM"), 0, "SIGTERM exits 0");
      await server({ port });
      await waitForStateSequence(p.page, ["connected", "reconnecting", "connected"], 40_000);
      await waitForState(p.page, "connected", 5_000);
      const newState = await clientState(p.page);
      assert.notEqual(newState.epoch, oldState.epoch, "a server without history starts a new epoch");

      // seqs 1..5 again, all at or below the 6 the page had seen.
      const newMember = await member(port, "after");
      const newTexts = Array.from({ length: 5 }, (_, index) => `new epoch ${index + 1}`);
      const newIds = await sayAll(newMember, newTexts);
      assert.deepEqual(
        newMember.messages().map((message) => message.seq),
        [1, 2, 3, 4, 5],
        "the restarted server counts from 1",
      );
      await waitForConfirmed(p.page, newTexts, 10_000);

      const lines = await readLines(p.page);
      assert.equal(gapCount(lines), 1, `exactly one gap notice: ${JSON.stringify(lines)}`);
      const messages = await readMessages(p.page);
      assert.deepEqual(
        messages.map((message) => message.text),
        [...oldTexts, ...newTexts],
        "every message once: the old epoch's, then the new one's",
      );
      assert.deepEqual(
        messages.slice(6).map((message) => [message.seq, message.id]),
        newIds.map((id, index) => [index + 1, id]),
      );
      assert.ok(messages.every((message) => !message.pending));
      // The gap sits between the old epoch's messages and the new one's.
      const gapIndex = lines.findIndex((line) => line.kind === "notice" && line.notice === "gap");
      const lastOld = lines.findIndex((line) => line.kind === "message" && line.text === oldTexts[5]);
      const firstNew = lines.findIndex((line) => line.kind === "message" && line.text === newTexts[0]);
      assert.ok(lastOld < gapIndex && gapIndex < firstNew, `the gap is between the epochs: ${JSON.stringify(lines)}`);
      assert.equal((await clientState(p.page)).lastSeq, 5);
      assert.deepEqual(p.errors, []);
    },
  );

  test(
    "restart with the same --history file: same epoch, no gap notice, seq continues",
    { timeout: 45_000 },
    async (t) => {
      t.after(cleanUp);
      const directory = mkdtempSync(join(tmpdir(), "chat-e2e-restart-"));
      defer(() => rmSync(directory, { recursive: true, force: true }));
      const historyFile = join(directory, "history.jsonl");
      const first = await testProcess(["--port", String(await freePort()), "--history", historyFile]);
      const p = await page(`http://127.0.0.1:${first.port}/`);

      const oldMember = await member(first.port, "before");
      const oldTexts = ["kept 1", "kept 2", "kept 3"];
      await sayAll(oldMember, oldTexts);
      await waitForConfirmed(p.page, oldTexts);
      const { epoch } = await clientState(p.page);
      assert.ok(epoch !== null);
      oldMember.destroy();

      await recordStates(p.page);
      assert.equal(await first.stop("SIGKILL"), null);
      const second = await server({ port: first.port, historyFile });
      assert.equal(second.port, first.port);
      await waitForStateSequence(p.page, ["connected", "reconnecting", "connected"], 40_000);
      await waitForState(p.page, "connected", 5_000);
      assert.equal((await clientState(p.page)).epoch, epoch, "window.chatClient.epoch is unchanged");

      const newMember = await member(second.port, "after");
      assert.equal(newMember.welcome.epoch, epoch, "the server kept its epoch");
      const newTexts = ["continued 4", "continued 5", "continued 6"];
      await sayAll(newMember, newTexts);
      await waitForConfirmed(p.page, newTexts, 10_000);

      const lines = await readLines(p.page);
      assert.equal(gapCount(lines), 0, `no gap notice: ${JSON.stringify(lines)}`);
      const messages = await readMessages(p.page);
      const list = assertSettled(messages, "page");
      assert.deepEqual(
        list.map(([seq]) => seq),
        [1, 2, 3, 4, 5, 6],
      );
      assert.deepEqual(
        messages.map((message) => message.text),
        [...oldTexts, ...newTexts],
      );
      const state = await clientState(p.page);
      assert.equal(state.epoch, epoch);
      assert.equal(state.lastSeq, 6);
      assert.deepEqual(p.errors, []);
    },
  );
});
