// End to end in Debian's Chromium (playwright-core): the page (client.html +
// client.js) against server.ts, over real TCP on 127.0.0.1: in this process,
// or a process where it is killed.
// README, "The page": own messages marked 我, pending messages, reconnection
// with backoff, the outbox, resume exactly once, the heartbeat that notices a
// half-open connection; plus the page opened from disk (Origin "null", §10.2),
// text shown as text, and permessage-deflate (RFC 7692) negotiated by a browser.
// Then the epoch across restarts (README, "Resume and epoch"): the server that
// is stopped (SIGTERM) or killed (SIGKILL) is a process; the one that takes its
// place on the same port runs in this process. A server restarted without its
// history counts from seq 1 again; a page that had seen seq 6 must still show
// the new seqs 1, 2, 3... and mark the gap once. A server restarted with the
// same --history keeps its epoch: no gap at all.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { connect, createServer, type Server, type Socket } from "node:net";
import { repositoryRoot } from "./support/spawn.ts";
import {
  assertNoPageErrors,
  assertSettled,
  clientState,
  useBrowser,
  readLines,
  readMessages,
  recordStates,
  recordedStates,
  typeMessage,
  waitForConfirmed,
  waitForState,
  waitForStateSequence,
  cleanUp,
  defer,
  testMember,
  testPage,
  testProcess,
  testServer,
  type ShownLine,
} from "./fixtures/e2e-browser.ts";
import type { ChatClient } from "./support/chat-client.ts";
import { freePort } from "./support/spawn.ts";

const browser = useBrowser();

const server = testServer;

const page = (url: string, options: Parameters<typeof testPage>[2] = {}) => testPage(browser(), url, options);

const member = testMember;

/** The path of a --history file in a folder of its own, removed after the test. */
function temporaryHistoryFile(): string {
  const directory = mkdtempSync(join(tmpdir(), "chat-e2e-"));
  defer(() => rmSync(directory, { recursive: true, force: true }));
  return join(directory, "history.jsonl");
}

/**
 * A TCP proxy between the page and the server that can go silent: freeze()
 * makes every connection open at that moment stop forwarding in both
 * directions without closing anything, as a router that forgot the
 * connection would. Connections made afterwards forward normally.
 */
class FreezableProxy {
  readonly pairs: Array<{ client: Socket; upstream: Socket; frozen: boolean }> = [];
  private readonly server: Server;
  port = 0;

  private constructor(targetPort: number) {
    this.server = createServer((client) => {
      const upstream = connect(targetPort, "127.0.0.1");
      const pair = { client, upstream, frozen: false };
      this.pairs.push(pair);
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      client.on("data", (chunk) => {
        if (!pair.frozen) upstream.write(chunk);
      });
      upstream.on("data", (chunk) => {
        if (!pair.frozen) client.write(chunk);
      });
      // A live pair passes a close on; a frozen one passes nothing at all.
      const closeOther = (other: Socket) => () => {
        if (!pair.frozen) other.destroy();
      };
      client.on("close", closeOther(upstream));
      upstream.on("close", closeOther(client));
      client.on("error", () => {});
      upstream.on("error", () => {});
    });
  }

  static async start(targetPort: number): Promise<FreezableProxy> {
    const proxy = new FreezableProxy(targetPort);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once("error", reject);
      proxy.server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = proxy.server.address();
    proxy.port = typeof address === "object" && address !== null ? address.port : 0;
    return proxy;
  }

  freeze(): void {
    for (const pair of this.pairs) pair.frozen = true;
  }

  close(): Promise<void> {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe("the chat page in Chromium", { timeout: 80_000 }, () => {
  test("two pages chat; each marks its own messages 我 and shows the other's name", { timeout: 30_000 }, async (t) => {
    t.after(cleanUp);
    const room = await server();
    const a = await page(`${room.httpUrl}/`);
    const b = await page(`${room.httpUrl}/`);
    const nameA = (await clientState(a.page)).name;
    const nameB = (await clientState(b.page)).name;
    assert.ok(nameA !== null && nameB !== null && nameA !== nameB, `two distinct names: ${nameA}, ${nameB}`);
    // Each page lists the other as online.
    await a.page.locator(`#users li.user[data-name="${nameB}"]`).waitFor({ timeout: 10_000 });
    await b.page.locator(`#users li.user[data-name="${nameA}"]`).waitFor({ timeout: 10_000 });

    const textA = "你好，我是 A";
    const textB = "hello from B";
    await typeMessage(a.page, textA);
    await typeMessage(b.page, textB);
    for (const opened of [a, b]) await waitForConfirmed(opened.page, [textA, textB]);

    const onA = await readMessages(a.page);
    const onB = await readMessages(b.page);
    const find = (messages: typeof onA, text: string) => {
      const found = messages.filter((message) => message.text === text);
      assert.equal(found.length, 1, `${JSON.stringify(text)} shows exactly once: ${JSON.stringify(messages)}`);
      return found[0]!;
    };
    // A's message: on A it is mine, labelled 我; on B it is A's, by name.
    const aOnA = find(onA, textA);
    const aOnB = find(onB, textA);
    assert.equal(aOnA.mine, true, "A's own message has class mine on A");
    assert.equal(aOnA.badge, "我", "A's own message is labelled 我 on A");
    assert.equal(aOnA.from, nameA);
    assert.equal(aOnB.mine, false, "A's message is not mine on B");
    assert.equal(aOnB.badge, null, "no 我 on B for A's message");
    assert.equal(aOnB.from, nameA, "B shows A's name");
    // And the other way round.
    const bOnB = find(onB, textB);
    const bOnA = find(onA, textB);
    assert.equal(bOnB.mine, true);
    assert.equal(bOnB.badge, "我");
    assert.equal(bOnA.mine, false);
    assert.equal(bOnA.badge, null);
    assert.equal(bOnA.from, nameB, "A shows B's name");
    // The same message is the same message on both pages.
    assert.deepEqual([aOnA.seq, aOnA.id], [aOnB.seq, aOnB.id]);
    assert.deepEqual([bOnA.seq, bOnA.id], [bOnB.seq, bOnB.id]);
    assert.deepEqual(
      assertSettled(onA, "A"),
      assertSettled(onB, "B"),
      "both pages show the same messages in the same order",
    );
    assertNoPageErrors(a, b);
  });

  test(
    "SIGKILL and restart with --history on the same port while A types: every message exactly once, same order on " +
      "both pages",
    { timeout: 60_000 },
    async (t) => {
      t.after(cleanUp);
      const historyFile = temporaryHistoryFile();
      const port = await freePort();
      const first = await testProcess(["--port", String(port), "--history", historyFile]);
      const url = `http://127.0.0.1:${port}/`;
      const a = await page(url);
      const b = await page(url);

      await typeMessage(a.page, "before the crash, from A");
      await typeMessage(b.page, "before the crash, from B");
      for (const opened of [a, b])
        await waitForConfirmed(opened.page, ["before the crash, from A", "before the crash, from B"]);
      const epoch = (await clientState(a.page)).epoch;
      assert.ok(epoch !== null);

      assert.equal(await first.stop("SIGKILL"), null, "killed, not exited");
      await waitForState(a.page, "reconnecting", 10_000);
      await waitForState(b.page, "reconnecting", 10_000);

      // Typed while the server is down: shown at once, as pending, with no seq.
      const typed = ["typed while down 1", "typed while down 2"];
      for (const text of typed) await typeMessage(a.page, text);
      const pending = (await readMessages(a.page)).filter((message) => message.pending);
      assert.deepEqual(
        pending.map((message) => message.text),
        typed,
        "both typed messages show as pending",
      );
      for (const message of pending) {
        assert.equal(message.seq, null, "a pending message has no data-seq");
        assert.equal(message.mine, true);
        assert.ok(message.id !== "", "a pending message has its data-id already");
      }
      assert.equal(await a.page.locator("#messages li.message.pending:not([data-seq])").count(), 2);
      assert.equal((await clientState(a.page)).outboxLength, 2);

      // Restarted on the same port with the same file, in this process.
      await server({ port, historyFile });
      const all = ["before the crash, from A", "before the crash, from B", ...typed];
      for (const opened of [a, b]) {
        await waitForState(opened.page, "connected", 40_000);
        await waitForConfirmed(opened.page, all, 15_000);
      }
      await a.page.waitForFunction(() => window.chatClient?.outboxLength === 0, undefined, { timeout: 10_000 });
      assert.equal(await a.page.locator("#messages li.pending").count(), 0, "no pending marks left on A");

      const onA = await readMessages(a.page);
      const onB = await readMessages(b.page);
      const listA = assertSettled(onA, "A");
      const listB = assertSettled(onB, "B");
      assert.deepEqual(listA, listB, "both pages show the same [seq, id] list");
      assert.deepEqual(
        onA.map((message) => message.text),
        all,
        "every message once, in the order sent",
      );
      assert.deepEqual(
        listA.map(([seq]) => seq),
        [1, 2, 3, 4],
        "seq continues across the restart",
      );
      // The ids on screen are the ids that were pending: re-sent, not re-made.
      assert.deepEqual(
        listA.slice(2).map(([, id]) => id),
        pending.map((message) => message.id),
      );
      // Same session, same sid after the restart: A's messages are still 我 on A, and only A's.
      assert.deepEqual(
        onA.map((message) => message.badge),
        ["我", null, "我", "我"],
      );
      assert.deepEqual(
        onB.map((message) => message.badge),
        [null, "我", null, null],
      );
      for (const opened of [a, b]) {
        assert.equal((await clientState(opened.page)).epoch, epoch, "same history, same epoch");
        assert.equal(await opened.page.locator('#messages li.notice[data-kind="gap"]').count(), 0, "no gap notice");
      }
      // And stored exactly once.
      const fileText = readFileSync(historyFile, "utf8");
      const stored = fileText.split("\n").filter((line) => line.includes('"seq"'));
      assert.equal(stored.length, 4, `the history file holds each message once:\n${fileText}`);
      assertNoPageErrors(a, b);
    },
  );

  test(
    "a half-open connection (a proxy that stops forwarding) is noticed by the heartbeat and replaced",
    { timeout: 40_000 },
    async (t) => {
      t.after(cleanUp);
      const room = await server();
      const proxy = await FreezableProxy.start(room.port);
      defer(() => proxy.close());
      const observer = await member(room.port, "observer");
      const serverUrl = `ws://127.0.0.1:${proxy.port}/`;
      const heartbeatMs = 1000;
      const heartbeatTimeoutMs = 1000;
      const timing = `heartbeat=${heartbeatMs}&heartbeatTimeout=${heartbeatTimeoutMs}`;
      const query = `server=${encodeURIComponent(serverUrl)}&${timing}`;
      const p = await page(`${room.httpUrl}/?${query}`);
      assert.equal(proxy.pairs.length, 1, "the page connected through the proxy");

      await typeMessage(p.page, "before the silence");
      await waitForConfirmed(p.page, ["before the silence"]);
      await observer.waitForMessage("before the silence");

      await recordStates(p.page);
      const frozenAt = Date.now();
      proxy.freeze();
      // A ping every second, one second to answer: noticed within about two
      // seconds. The bound is generous; what matters is that it is noticed at all
      // while the socket itself never closes.
      await waitForStateSequence(p.page, ["connected", "reconnecting"], heartbeatMs + heartbeatTimeoutMs + 6_000);
      const noticedAfterMs = Date.now() - frozenAt;
      assert.equal(
        proxy.pairs[0]!.upstream.destroyed,
        false,
        "the proxy never closed the frozen connection to the server",
      );
      await waitForStateSequence(p.page, ["connected", "reconnecting", "connected"], 15_000);
      await waitForState(p.page, "connected", 5_000);
      assert.ok(proxy.pairs.length >= 2, "a fresh connection went through the proxy");
      assert.equal(proxy.pairs[proxy.pairs.length - 1]!.frozen, false);

      const text = "after the silence";
      await typeMessage(p.page, text);
      await waitForConfirmed(p.page, [text]);
      const arrived = await observer.waitForMessage(text);
      assert.equal(arrived.from, (await clientState(p.page)).name, "it came from the page's new connection");
      const messages = await readMessages(p.page);
      assertSettled(messages, "page");
      assert.deepEqual(
        messages.map((message) => message.text),
        ["before the silence", text],
      );
      t.diagnostic(
        `half-open connection noticed after ${noticedAfterMs} ms; states ` +
          `${JSON.stringify(await recordedStates(p.page))}`,
      );
      assertNoPageErrors(p);
    },
  );

  test("a message that looks like HTML is shown as text", { timeout: 30_000 }, async (t) => {
    t.after(cleanUp);
    const room = await server();
    const a = await page(`${room.httpUrl}/`);
    const b = await page(`${room.httpUrl}/`);
    const dialogs: string[] = [];
    for (const opened of [a, b]) {
      opened.page.on("dialog", (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss().catch(() => {});
      });
    }
    // A name that looks like HTML too, from a member on a raw socket.
    const htmlName = "<img src=y onerror=alert(2)>";
    const raw = await member(room.port, htmlName);
    const payload = "<img src=x onerror=alert(1)>";
    await typeMessage(a.page, payload);
    raw.sayText(`<b>bold</b> <script>alert(3)</script>`);
    for (const opened of [a, b]) {
      await waitForConfirmed(opened.page, [payload, "<b>bold</b> <script>alert(3)</script>"]);
      await opened.page.locator(`#users li.user[data-name="${htmlName}"]`).waitFor({ timeout: 10_000 });
      const shown = (await readMessages(opened.page)).find((message) => message.text === payload);
      assert.ok(shown !== undefined);
      const check = await opened.page.evaluate((text) => {
        const rows = [...document.querySelectorAll<HTMLLIElement>("#messages li.message")];
        const row = rows.find((item) => item.querySelector(".text")?.textContent === text);
        return {
          textContent: row?.querySelector(".text")?.textContent ?? null,
          childElements: row?.querySelector(".text")?.children.length ?? -1,
          imagesInMessages: document.querySelectorAll("#messages img").length,
          scriptsInMessages: document.querySelectorAll("#messages script, #users script, #messages b").length,
          userText:
            document.querySelector(`#users li.user[data-name="${CSS.escape("<img src=y onerror=alert(2)>")}"]`)
              ?.textContent ?? null,
        };
      }, payload);
      assert.equal(check.textContent, payload, "textContent is the message exactly");
      assert.equal(check.childElements, 0, "the text is a text node, no elements");
      assert.equal(check.imagesInMessages, 0, "no img element in #messages");
      assert.equal(check.scriptsInMessages, 0, "no script or b element made from text");
      assert.equal(check.userText, htmlName, "an HTML-looking name is shown as text too");
    }
    // An img made from the text would fail to load and fire onerror: wait until an img of our own
    // with the same kind of address has failed, so that one would have too.
    await a.page.evaluate(
      () =>
        new Promise<void>((resolve) => {
          const probe = new Image();
          probe.onerror = () => resolve();
          probe.src = "x";
        }),
    );
    assert.deepEqual(dialogs, [], "no dialog fired");
    assertNoPageErrors(a, b);
  });

  test(
    "client.html opened from file:// chats with the server (Origin: null is allowed)",
    { timeout: 30_000 },
    async (t) => {
      t.after(cleanUp);
      const room = await server({ trace: "frames" });
      const observer = await member(room.port, "observer");
      const pageOnDisk = pathToFileURL(join(repositoryRoot, "client.html")).href;
      const fileUrl = `${pageOnDisk}?server=${encodeURIComponent(`ws://127.0.0.1:${room.port}/`)}`;
      assert.ok(fileUrl.startsWith("file://"));
      const p = await page(fileUrl);
      assert.ok(p.page.url().startsWith("file://"), `the page is on disk: ${p.page.url()}`);
      await room.waitForOutput(/Origin: null/i, 5_000);

      await typeMessage(p.page, "hello from disk");
      await waitForConfirmed(p.page, ["hello from disk"]);
      const arrived = await observer.waitForMessage("hello from disk");
      assert.equal(arrived.from, (await clientState(p.page)).name);
      observer.sayText("hello back to disk");
      await waitForConfirmed(p.page, ["hello back to disk"]);
      const back = (await readMessages(p.page)).find((message) => message.text === "hello back to disk");
      assert.equal(back?.from, "observer");
      assert.equal(back?.mine, false);
      assertNoPageErrors(p);
    },
  );

  test(
    "Chromium's page negotiates permessage-deflate (RFC 7692), and compressed messages arrive intact",
    { timeout: 30_000 },
    async (t) => {
      t.after(cleanUp);
      const room = await server({ trace: "frames" });
      const requests: Array<Record<string, string>> = [];
      const responses: Array<{ status: number; headers: Record<string, string> }> = [];
      const p = await page(`${room.httpUrl}/`, {
        beforeGoto: async (target, context) => {
          const cdp = await context.newCDPSession(target);
          cdp.on("Network.webSocketWillSendHandshakeRequest", (event) => requests.push(event.request.headers));
          cdp.on("Network.webSocketHandshakeResponseReceived", (event) =>
            responses.push({ status: event.response.status, headers: event.response.headers }),
          );
          await cdp.send("Network.enable");
        },
      });
      const header = (headers: Record<string, string>, name: string) =>
        Object.entries(headers).find(([key]) => key.toLowerCase() === name.toLowerCase())?.[1];
      assert.ok(responses.length >= 1, "CDP reported the handshake response");
      assert.equal(responses[0]!.status, 101);
      const offered = header(requests[0] ?? {}, "Sec-WebSocket-Extensions") ?? "";
      assert.match(offered, /permessage-deflate/, "Chromium offered permessage-deflate");
      const agreed = header(responses[0]!.headers, "Sec-WebSocket-Extensions") ?? "";
      assert.match(
        agreed,
        /permessage-deflate/,
        `the response header says permessage-deflate: ${JSON.stringify(responses[0]!.headers)}`,
      );

      // Over the deflate threshold, so the server compresses its copy; Chromium compresses what it sends.
      const observer = await member(room.port, "observer");
      const long = "压缩 compress me, ".repeat(110).trim();
      await typeMessage(p.page, long);
      await waitForConfirmed(p.page, [long]);
      assert.equal((await observer.waitForMessage(long)).text, long, "the server inflated the page's message intact");
      // The trace shows RSV1 set on frames in both directions on the page's connection.
      assert.match(room.output(), /← text\s+FIN=1 RSV=100/, "the page sent a compressed frame (RSV1)");
      assert.match(room.output(), /→ text\s+FIN=1 RSV=100/, "the server sent a compressed frame (RSV1)");
      const lines = await readLines(p.page);
      assert.ok(lines.some((line) => line.kind === "message" && line.text === long && line.mine));
      assertNoPageErrors(p);
    },
  );
});

// ── Restarts and the epoch ───────────────────────────────────────────────────

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
      const historyFile = temporaryHistoryFile();
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
