// Large rooms and long histories in Debian's Chromium (issue 16): a first
// visit is sent the newest page of messages and loads older ones when the
// reader scrolls up or presses the button; a room of more than 100 members
// shows the server's counts, the first page of members with "more…", and its
// comings and goings as one line of counts.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import type { ChatClient } from "./support/chat-client.ts";
import { noRateLimit } from "./support/in-process.ts";
import {
  assertNoPageErrors,
  assertSettled,
  cleanUp,
  readLines,
  readMessages,
  testMember,
  testPage,
  testServer,
  useBrowser,
  waitForConfirmed,
} from "./fixtures/e2e-browser.ts";

const browser = useBrowser();

/** Waits until `count` messages are on the page. */
async function waitForMessageCount(opened: Page, count: number): Promise<void> {
  try {
    await opened.waitForFunction(
      (wanted) => document.querySelectorAll("#messages li.message").length === wanted,
      count,
      { timeout: 15_000, polling: 50 },
    );
  } catch (error) {
    const shown = await opened.evaluate(() => document.querySelectorAll("#messages li.message").length);
    throw new Error(`the page did not show ${count} messages (it shows ${shown}): ${String(error)}`);
  }
}

/** What the member panel shows; the note and the button are null while hidden. */
async function memberPanel(opened: Page) {
  // No functions declared inside: tsx names them with a helper the page does not have.
  return opened.evaluate(() => {
    const note = document.getElementById("users-note");
    const more = document.getElementById("users-more");
    return {
      heading: document.getElementById("users-heading")?.textContent ?? "",
      sids: [...document.querySelectorAll<HTMLLIElement>("#users li.user")].map((item) => item.dataset.sid ?? ""),
      note: note === null || note.hidden ? null : (note.textContent ?? ""),
      more: more === null || more.hidden ? null : (more.textContent ?? ""),
    };
  });
}

/** Waits until the member panel's heading reads `heading`, or the list has `count` members, or both. */
async function waitForPanel(opened: Page, wanted: { heading?: string; count?: number }) {
  try {
    await opened.waitForFunction(
      ({ heading, count }) =>
        (heading === undefined || document.getElementById("users-heading")?.textContent === heading) &&
        (count === undefined || document.querySelectorAll("#users li.user").length === count),
      wanted,
      { timeout: 15_000, polling: 50 },
    );
  } catch (error) {
    throw new Error(
      `the member panel did not get to ${JSON.stringify(wanted)}: ${JSON.stringify(await memberPanel(opened))}: ` +
        String(error),
    );
  }
  return memberPanel(opened);
}

/** The presence lines on the page, as their words. */
function presenceLines(opened: Page): Promise<string[]> {
  return opened.evaluate(() =>
    [...document.querySelectorAll<HTMLLIElement>('#messages > li.notice[data-kind="presence"] .words')].map(
      (words) => words.textContent ?? "",
    ),
  );
}

/** Waits until a member of the room has been told, in a summary, that the room has `count` members. */
async function waitForSummary(member: ChatClient, count: number): Promise<void> {
  await member.raw.waitFor(
    () => member.received().some((frame) => frame.type === "presence" && frame.memberCount === count),
    10_000,
    `a presence summary counting ${count}`,
  );
}

describe("large rooms in Chromium", { timeout: 120_000 }, () => {
  test(
    "a first visit shows the newest 100 messages, no gap; scrolling to the top and the button load older pages in place",
    { timeout: 60_000 },
    async (t) => {
      t.after(cleanUp);
      const room = await testServer(noRateLimit);
      const writer = await testMember(room.port, "Writer");
      for (let index = 1; index <= 250; index++) writer.sayText(`message ${index}`);
      await writer.waitForMessage("message 250");

      const reader = await testPage(browser(), `${room.httpUrl}/`);
      await waitForConfirmed(reader.page, ["message 250"]);
      await waitForMessageCount(reader.page, 100);
      const first = await readLines(reader.page);
      assert.deepEqual(
        first.map((line) => (line.kind === "message" ? line.seq : line.notice)),
        Array.from({ length: 100 }, (_, index) => 151 + index),
        "the newest page, and no gap notice: older messages are only not loaded yet",
      );
      assert.equal(await reader.page.locator("#older").isVisible(), true);

      // The reader scrolls up to the top with the mouse wheel.
      await reader.page.locator("#messages").hover();
      await reader.page.mouse.wheel(0, -1_000_000);
      await waitForMessageCount(reader.page, 200);
      const place = await reader.page.evaluate(() => {
        const list = document.getElementById("messages")!;
        const row = list.querySelector<HTMLElement>('li.message[data-seq="151"]')!;
        return {
          offset: row.getBoundingClientRect().top - list.getBoundingClientRect().top,
          height: list.clientHeight,
          scrollTop: list.scrollTop,
          older: window.chatClient?.olderMessages,
        };
      });
      assert.ok(
        place.offset > -40 && place.offset < place.height && place.scrollTop > 0,
        `the message that was at the top is still in view, with the older ones above it: ${JSON.stringify(place)}`,
      );
      assert.equal(place.older, "available", "one page per scroll: nothing was asked by itself");

      // The rest with the button, as a keyboard user would.
      await reader.page.locator("#older").focus();
      await reader.page.keyboard.press("Enter");
      await waitForMessageCount(reader.page, 250);
      await reader.page.locator("#older").waitFor({ state: "hidden" });
      assert.equal(await reader.page.evaluate(() => window.chatClient?.olderMessages), "exhausted");
      const all = await readLines(reader.page);
      assert.deepEqual(
        all.filter((line) => line.kind === "notice"),
        [],
        "a page of older messages is never a gap",
      );
      const seqs = assertSettled(await readMessages(reader.page), "reader").map(([seq]) => seq);
      assert.deepEqual(
        seqs,
        Array.from({ length: 250 }, (_, index) => index + 1),
      );
      assertNoPageErrors(reader);
    },
  );

  test(
    "more than 100 members: the server's counts, the first page with more…, one line of counts, leavers gone",
    { timeout: 60_000 },
    async (t) => {
      t.after(cleanUp);
      const room = await testServer();
      const crowd: ChatClient[] = [];
      for (let index = 1; index <= 120; index++) crowd.push(await testMember(room.port, `成员${index}`));
      // The crowd's arrival is summed up before the page comes, so the page's lines are only about what follows.
      await waitForSummary(crowd[0]!, 120);

      const watcher = await testPage(browser(), `${room.httpUrl}/`);
      const opened = await waitForPanel(watcher.page, { count: 100 });
      assert.equal(opened.heading, "在线（121）", "online counts everyone connected, not the page of the list");
      assert.equal(opened.sids.length, 100);
      assert.deepEqual(
        opened.sids,
        crowd.slice(0, 100).map((member) => member.welcome.you),
        "in arrival order",
      );
      assert.equal(opened.note, "显示 100 / 121 人");
      assert.equal(opened.more, "更多…");

      await watcher.page.locator("#users-more").click();
      const whole = await waitForPanel(watcher.page, { count: 121 });
      assert.deepEqual([whole.note, whole.more], [null, null], "the whole room: nothing more to offer");
      const you = await watcher.page.evaluate(() => window.chatClient?.you ?? null);
      assert.ok(whole.sids.includes(you ?? "?"), "the page itself is in the list now");

      for (let index = 121; index <= 132; index++) crowd.push(await testMember(room.port, `成员${index}`));
      await waitForPanel(watcher.page, { heading: "在线（133）" });
      await watcher.page.waitForFunction(
        () => document.querySelector('#messages li.notice[data-kind="presence"] .words')?.textContent === "12 人加入",
        undefined,
        { timeout: 10_000 },
      );

      const leaving = crowd.splice(0, 3);
      for (const member of leaving) member.destroy();
      const after = await waitForPanel(watcher.page, { heading: "在线（130）" });
      for (const member of leaving) {
        assert.equal(after.sids.includes(member.welcome.you), false, "the list never shows someone named as gone");
      }
      await watcher.page.waitForFunction(
        () =>
          document.querySelector('#messages li.notice[data-kind="presence"] .words')?.textContent ===
          "12 人加入，3 人离开",
        undefined,
        { timeout: 10_000 },
      );
      assert.deepEqual(
        await presenceLines(watcher.page),
        ["12 人加入，3 人离开"],
        "summaries with nothing said between them add up in one line",
      );
      // Whatever was named is shown; the rest is one click away.
      if (after.sids.length < 130) assert.equal(after.more, "更多…");
      assertNoPageErrors(watcher);
    },
  );
});
