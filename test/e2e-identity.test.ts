// Who is who, in Debian's Chromium (README, "Identity"): a session per tab
// owns its name, and 我 marks exactly the messages of your own session. The
// two scenarios a new user met before sessions existed, a rename seen from
// another page, and a duplicated tab that must become someone new.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import {
  assertNoPageErrors,
  cleanUp,
  clientState,
  defer,
  readLines,
  readMessages,
  testMember,
  testPage,
  testServer,
  typeMessage,
  useBrowser,
  waitForConfirmed,
  waitForState,
} from "./fixtures/e2e-browser.ts";

const browser = useBrowser();
const page = (url: string) => testPage(browser(), url);

/** Types a name into the name field and presses Enter, as a person would. */
async function chooseName(opened: Page, name: string): Promise<void> {
  await opened.locator("#name").fill(name);
  await opened.locator("#name").press("Enter");
}

async function waitForName(opened: Page, name: string): Promise<void> {
  await opened.waitForFunction((wanted) => window.chatClient?.name === wanted, name, { timeout: 10_000 });
}

function you(opened: Page): Promise<string | null> {
  return opened.evaluate(() => window.chatClient?.you ?? null);
}

/** The notices on the page, as "kind: text". */
async function notices(opened: Page): Promise<string[]> {
  return opened.evaluate(() =>
    [...document.querySelectorAll<HTMLLIElement>("#messages > li.notice")].map(
      (item) => `${item.dataset.kind}: ${item.lastChild?.textContent?.trim() ?? ""}`,
    ),
  );
}

describe("identity in Chromium", { timeout: 90_000 }, () => {
  test(
    "the holder of a name reloads and stays Teacher; the page that asked for it does not take it",
    { timeout: 40_000 },
    async (t) => {
      t.after(cleanUp);
      const room = await testServer();
      const teacher = await page(`${room.httpUrl}/`);
      await chooseName(teacher.page, "Teacher");
      await waitForName(teacher.page, "Teacher");
      await typeMessage(teacher.page, "class starts now");
      await waitForConfirmed(teacher.page, ["class starts now"]);

      const student = await page(`${room.httpUrl}/`);
      const studentName = (await clientState(student.page)).name;
      await chooseName(student.page, "Teacher");
      await student.page.locator('#alert[data-code="name_taken"]').waitFor({ timeout: 10_000 });
      assert.equal((await clientState(student.page)).name, studentName, "a refused rename keeps the old name");

      const teacherSid = await you(teacher.page);
      await teacher.page.reload();
      await waitForState(teacher.page, "connected");
      assert.equal((await clientState(teacher.page)).name, "Teacher", "the reloaded holder is still Teacher");
      assert.equal(await you(teacher.page), teacherSid, "same session, same sid");
      // The student's page saw the holder away and back in the list, and no line about it.
      await student.page.locator(`#users li.user[data-sid="${teacherSid}"]:not(.away)`).waitFor({ timeout: 10_000 });
      assert.equal((await clientState(student.page)).name, studentName, "the student did not take the name");

      await typeMessage(student.page, "a question");
      await waitForConfirmed(teacher.page, ["class starts now", "a question"]);
      const onTeacher = await readMessages(teacher.page);
      assert.deepEqual(
        onTeacher.map((message) => [message.from, message.text, message.badge]),
        [
          ["Teacher", "class starts now", "我"],
          [studentName, "a question", null],
        ],
        "after the reload the teacher's own message is still 我, the student's is not",
      );
      const studentNotices = await notices(student.page);
      assert.ok(
        studentNotices.every((line) => !line.includes("Teacher") || line.startsWith("renamed")),
        `no joined or left line for the reload: ${JSON.stringify(studentNotices)}`,
      );
      assertNoPageErrors(teacher, student);
    },
  );

  test("a later 小明 sees the old 小明's messages without 我", { timeout: 40_000 }, async (t) => {
    t.after(cleanUp);
    const room = await testServer({ nameGraceMs: 500 });
    const watcher = await testMember(room.port, "Watcher");
    const first = await page(`${room.httpUrl}/`);
    assert.equal((await clientState(first.page)).name, "小明");
    const firstSid = await you(first.page);
    await typeMessage(first.page, "我是第一个小明");
    await waitForConfirmed(first.page, ["我是第一个小明"]);
    await first.close();
    // The grace runs out on the server: wait for its `left`.
    await watcher.raw.waitFor(
      () => watcher.received().some((frame) => frame.type === "left" && frame.sid === firstSid),
      10_000,
      "the first 小明 to leave",
    );

    const second = await page(`${room.httpUrl}/`);
    assert.equal((await clientState(second.page)).name, "小明");
    assert.notEqual(await you(second.page), firstSid);
    await waitForConfirmed(second.page, ["我是第一个小明"]);
    await typeMessage(second.page, "我是新的小明");
    await waitForConfirmed(second.page, ["我是新的小明"]);
    const shown = await readMessages(second.page);
    assert.deepEqual(
      shown.map((message) => [message.from, message.text, message.mine, message.badge]),
      [
        ["小明", "我是第一个小明", false, null],
        ["小明", "我是新的小明", true, "我"],
      ],
    );
    assertNoPageErrors(second);
  });

  test("a rename shows one line on the other page, and the member list follows", { timeout: 30_000 }, async (t) => {
    t.after(cleanUp);
    const room = await testServer();
    const a = await page(`${room.httpUrl}/`);
    const b = await page(`${room.httpUrl}/`);
    const nameA = (await clientState(a.page)).name!;
    const sidA = await you(a.page);
    await b.page.locator(`#users li.user[data-sid="${sidA}"]`).waitFor();
    const before = await readLines(b.page);

    await chooseName(a.page, "Bob");
    await waitForName(a.page, "Bob");
    await b.page.locator(`#users li.user[data-sid="${sidA}"][data-name="Bob"]`).waitFor();
    const after = await readLines(b.page);
    assert.equal(after.length, before.length + 1, "exactly one new line");
    assert.deepEqual(await notices(b.page).then((lines) => lines.slice(-1)), [`renamed: ${nameA} 改名为 Bob`]);
    assert.deepEqual((await notices(a.page)).slice(-1), [`renamed: ${nameA} 改名为 Bob`]);

    await typeMessage(a.page, "Bob here");
    await waitForConfirmed(b.page, ["Bob here"]);
    const [message] = (await readMessages(b.page)).filter((shown) => shown.text === "Bob here");
    assert.equal(message?.from, "Bob");
    assertNoPageErrors(a, b);
  });

  test(
    "a duplicated tab (sessionStorage copied) takes a session of its own; the original keeps its identity",
    { timeout: 30_000 },
    async (t) => {
      t.after(cleanUp);
      const room = await testServer();
      const original = await page(`${room.httpUrl}/`);
      await typeMessage(original.page, "from the original tab");
      await waitForConfirmed(original.page, ["from the original tab"]);
      const originalSid = await you(original.page);
      const originalSession = await original.page.evaluate(() => sessionStorage.getItem("chatRoom.session"));

      // window.open copies the opener's sessionStorage into the new tab, as "Duplicate tab" does.
      await original.page.evaluate(() => sessionStorage.setItem("e2e.marker", "copied"));
      const [duplicate] = await Promise.all([
        original.context.waitForEvent("page"),
        original.page.evaluate(() => void window.open(location.href)),
      ]);
      defer(() => duplicate.close());
      const errors: string[] = [];
      duplicate.on("pageerror", (error) => errors.push(error.message));
      await waitForState(duplicate, "connected");
      await duplicate.waitForFunction(
        (old) => window.chatClient?.you !== null && window.chatClient?.you !== old,
        originalSid,
        {
          timeout: 10_000,
        },
      );
      assert.equal(
        await duplicate.evaluate(() => sessionStorage.getItem("e2e.marker")),
        "copied",
        "the duplicate got a copy of sessionStorage",
      );
      const duplicateSession = await duplicate.evaluate(() => sessionStorage.getItem("chatRoom.session"));
      assert.notEqual(duplicateSession, originalSession, "the duplicate made its own secret");
      assert.equal(await you(original.page), originalSid, "the original is still who it was");
      assert.equal(await original.page.evaluate(() => sessionStorage.getItem("chatRoom.session")), originalSession);

      // The copied transcript is the original's; in the duplicate it is not 我.
      const copied = (await readMessages(duplicate)).find((message) => message.text === "from the original tab");
      assert.equal(copied?.badge, null, "the original's message is not the duplicate's own");
      // Both are in the room, as two people.
      await original.page.locator("#users li.user").nth(1).waitFor();
      const members = await original.page.evaluate(() => window.chatClient?.members.map((member) => member.sid) ?? []);
      assert.equal(new Set(members).size, 2);
      assert.deepEqual(errors, []);
      assertNoPageErrors(original);
    },
  );
});
