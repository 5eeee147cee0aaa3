// The rough edges a newcomer hit (issue 13), in Debian's Chromium against
// server.ts in this process: the page opened from disk with no server (it says
// where it tries and how to start one) or with a ?server= that is not a
// WebSocket address (it says so and connects nowhere); right-to-left text;
// "N new messages ↓" for a reader scrolled up; WCAG 2.1 AA by axe-core in both
// languages and colour schemes; an unknown online count while disconnected;
// "me" in English; a message box with line breaks and a counter near the
// limit; dates on older messages; a phone's header in one row.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Page } from "playwright-core";
import { repositoryRoot } from "./support/spawn.ts";
import { noRateLimit } from "./support/in-process.ts";
import {
  assertNoPageErrors,
  cleanUp,
  defer,
  readMessages,
  testMember,
  testPage,
  testServer,
  typeMessage,
  useBrowser,
  waitForConfirmed,
  waitForState,
  type ChatPage,
} from "./fixtures/e2e-browser.ts";

const browser = useBrowser();

const pageOnDisk = pathToFileURL(join(repositoryRoot, "client.html")).href;

/** A page in `locale` (and more context options), closed after the test; not waited for to connect. */
async function openIn(
  url: string,
  locale: string,
  options: { colorScheme?: "light" | "dark"; viewport?: { width: number; height: number }; future?: number } = {},
): Promise<ChatPage> {
  const context = await browser().newContext({
    locale,
    colorScheme: options.colorScheme ?? "light",
    viewport: options.viewport ?? { width: 1280, height: 720 },
    // The server's Content-Security-Policy lets no inline script run, and
    // page.addScriptTag (axe-core) adds one; the page's own scripts are unchanged.
    bypassCSP: true,
  });
  defer(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.stack ?? error.message));
  // The page's clock moved on by `future` ms: what the server stamps now is then from an earlier day.
  if (options.future !== undefined) await page.clock.setFixedTime(new Date(Date.now() + options.future));
  await page.goto(url);
  return { context, page, errors, close: () => context.close() };
}

/** Resolves when nothing accepts TCP connections on localhost:`port`. */
async function assertNothingListens(port: number): Promise<void> {
  const accepted = await new Promise<boolean>((resolve) => {
    const socket = connect(port, "localhost");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
  assert.equal(accepted, false, `this test needs nothing listening on localhost:${port}, where a page from disk looks`);
}

/** The help under the status, with commands in backquotes; null while hidden. */
function serverHelpText(page: Page): Promise<{ kind: string; text: string } | null> {
  return page.evaluate(() => {
    const help = document.getElementById("server-help");
    if (help === null || help.hidden) return null;
    const text = [...help.childNodes]
      .map((node) =>
        node instanceof HTMLElement && node.tagName === "CODE" ? `\`${node.textContent}\`` : node.textContent,
      )
      .join("");
    return { kind: help.dataset.kind ?? "", text };
  });
}

describe("a newcomer's rough edges (#13) in Chromium", { timeout: 180_000 }, () => {
  test("from disk with no server: the page says which address it tries and how to start the server", async (t) => {
    t.after(cleanUp);
    await assertNothingListens(5500);
    const zh = await openIn(pageOnDisk, "zh-CN");
    const en = await openIn(pageOnDisk, "en-US");
    for (const opened of [zh, en]) {
      await waitForState(opened.page, "reconnecting");
      await opened.page.locator("#server-help").waitFor({ state: "visible" });
    }
    assert.deepEqual(await serverHelpText(en.page), {
      kind: "no-answer",
      text:
        "No chat server answers at ws://localhost:5500/. Start one in the chat room's folder: `npm start` " +
        "(or `node server.ts` on Node 24).",
    });
    const onZh = await serverHelpText(zh.page);
    assert.equal(onZh?.kind, "no-answer");
    assert.match(onZh?.text ?? "", /^ws:\/\/localhost:5500\/ 没有聊天服务器应答。.*`npm start`.*`node server\.ts`/);
    assertNoPageErrors(zh, en);
  });

  test("a ?server= that is not ws:// or wss:// is shown as the error it is, and nothing is connected", async (t) => {
    t.after(cleanUp);
    const room = await testServer();
    // A real server behind the wrong scheme: were the page to guess, it could connect to it.
    const given = `http://127.0.0.1:${room.port}/`;
    const sockets: string[] = [];
    for (const [locale, words] of [
      ["en-US", /^`\?server=http:\/\/127\.0\.0\.1:\d+\/` in the address bar is not a WebSocket address/],
      ["zh-CN", /^地址栏里的 `\?server=http:\/\/127\.0\.0\.1:\d+\/` 不是 WebSocket 地址/],
    ] as const) {
      for (const base of [pageOnDisk, `${room.httpUrl}/`]) {
        const context = await browser().newContext({ locale });
        defer(() => context.close());
        const page = await context.newPage();
        page.on("websocket", (socket) => sockets.push(socket.url()));
        await page.goto(`${base}?server=${encodeURIComponent(given)}`);
        await page.locator('#server-help[data-kind="invalid"]').waitFor({ state: "visible" });
        const help = await serverHelpText(page);
        assert.match(help?.text ?? "", words);
        const status = await page.evaluate(() => ({
          state: window.chatClient?.state,
          text: document.getElementById("status-text")?.textContent,
          retry: document.getElementById("retry")?.hidden,
        }));
        assert.deepEqual(status, {
          state: "offline",
          text: locale === "en-US" ? "Not connected" : "未连接",
          retry: true,
        });
      }
    }
    assert.deepEqual(sockets, [], "the page opened no WebSocket");
    assert.equal(room.running.connections.size, 0, "and the server saw none");
  });

  test("right-to-left text and names take their own direction (dir=auto), in the messages and the member list", async (t) => {
    t.after(cleanUp);
    const room = await testServer();
    const p = await testPage(browser(), `${room.httpUrl}/`);
    const hebrew = "שלום עולם, 123 abc!";
    const member = await testMember(room.port, "דוד");
    member.sayText(hebrew);
    await waitForConfirmed(p.page, [hebrew]);
    await typeMessage(p.page, "left to right");
    await waitForConfirmed(p.page, ["left to right"]);
    // No functions declared inside: tsx names them with a helper the page does not have.
    const shown = await p.page.evaluate(() => ({
      rows: [...document.querySelectorAll<HTMLLIElement>("#messages li.message")].map((row) =>
        [row.querySelector(".from")!, row.querySelector(".text")!].map((element) => ({
          dir: element.getAttribute("dir"),
          rtl: element.matches(":dir(rtl)"),
        })),
      ),
      user: [...document.querySelectorAll('#users li.user[data-name="דוד"] .user-name')].map((element) => ({
        dir: element.getAttribute("dir"),
        rtl: element.matches(":dir(rtl)"),
      }))[0],
    }));
    assert.deepEqual(shown.rows, [
      [
        { dir: "auto", rtl: true },
        { dir: "auto", rtl: true },
      ],
      [
        { dir: "auto", rtl: false },
        { dir: "auto", rtl: false },
      ],
    ]);
    assert.deepEqual(shown.user, { dir: "auto", rtl: true });
    assertNoPageErrors(p);
  });

  test('scrolled up while messages arrive: "N new messages ↓" takes the reader down and goes', async (t) => {
    t.after(cleanUp);
    const room = await testServer(noRateLimit);
    const p = await testPage(browser(), `${room.httpUrl}/`);
    const member = await testMember(room.port, "talker");
    const first = Array.from({ length: 40 }, (_, index) => `line ${index + 1}`);
    for (const text of first) member.sayText(text);
    await waitForConfirmed(p.page, first);
    const button = p.page.locator("#new-below");
    assert.equal(await button.isHidden(), true, "at the bottom, nothing to point to");

    const scrollTo = (where: "top" | "bottom") =>
      p.page.evaluate((to) => {
        const list = document.getElementById("messages")!;
        list.scrollTop = to === "top" ? 0 : list.scrollHeight;
      }, where);
    const atBottom = () =>
      p.page.evaluate(() => {
        const list = document.getElementById("messages")!;
        return list.scrollHeight - list.scrollTop - list.clientHeight < 2;
      });

    await scrollTo("top");
    for (const text of ["new 1", "new 2", "new 3"]) member.sayText(text);
    await waitForConfirmed(p.page, ["new 1", "new 2", "new 3"]);
    await p.page.waitForFunction(() => document.getElementById("new-below")?.textContent === "3 条新消息 ↓");
    assert.equal(await atBottom(), false, "the reader stays where they were");
    await button.click();
    await button.waitFor({ state: "hidden" });
    assert.equal(await atBottom(), true, "the button took the reader to the newest line");

    // Scrolling down by hand reads them too.
    await scrollTo("top");
    member.sayText("new 4");
    await p.page.waitForFunction(() => document.getElementById("new-below")?.textContent === "1 条新消息 ↓");
    await scrollTo("bottom");
    await button.waitFor({ state: "hidden" });
    assertNoPageErrors(p);
  });

  test("WCAG 2.1 A and AA (axe-core): both languages, both colour schemes, the inspector and the frame lab closed and open, online and not", async (t) => {
    t.after(cleanUp);
    const axePath = join(repositoryRoot, "node_modules", "axe-core", "axe.min.js");
    // The four pages are audited at once, each with its own server: one browser, four contexts.
    const audit = async (locale: string, colorScheme: "light" | "dark"): Promise<string[]> => {
      const report: string[] = [];
      const room = await testServer(noRateLimit);
      // From disk with ?server=, so that once the server is gone the help shows too.
      const url = `${pageOnDisk}?server=${encodeURIComponent(`ws://127.0.0.1:${room.port}/`)}`;
      const opened = await openIn(url, locale, { colorScheme });
      const { page } = opened;
      await waitForState(page, "connected");
      const member = await testMember(room.port, "Bob");
      const theirs = Array.from({ length: 14 }, (_, index) => `Bob says ${index + 1}`);
      for (const text of theirs) member.sayText(text);
      await typeMessage(page, "mine, with a\nsecond line");
      await waitForConfirmed(page, [...theirs, "mine, with a\nsecond line"]);
      // The new-messages button, and the counter near the limit.
      await page.evaluate(() => (document.getElementById("messages")!.scrollTop = 0));
      member.sayText("while you were up there");
      await page.locator("#new-below").waitFor({ state: "visible" });
      await page.locator("#input").fill("x".repeat(1900));
      await page.locator("#counter").waitFor({ state: "visible" });

      const check = async (what: string) => {
        if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: axePath });
        const violations = await page.evaluate(async () => {
          const { axe } = window as unknown as {
            axe: {
              run(
                context: Document,
                options: object,
              ): Promise<{
                violations: Array<{ id: string; nodes: Array<{ target: string[]; failureSummary?: string }> }>;
              }>;
            };
          };
          const result = await axe.run(document, {
            runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
            // Every rule still runs on every node; passes go unreported, so axe need not collect them.
            resultTypes: ["violations"],
          });
          return result.violations.flatMap((violation) =>
            violation.nodes.map((node) => `${violation.id} ${node.target.join(" ")}: ${node.failureSummary ?? ""}`),
          );
        });
        report.push(...violations.map((violation) => `${locale} ${colorScheme} ${what}: ${violation}`));
      };
      const toggle = async (open: boolean) => {
        await page.click("#inspector-toggle");
        await page.locator("#inspector").waitFor({ state: open ? "visible" : "hidden" });
        if (open) await page.locator("#inspector-frames > li").first().waitFor();
      };

      await check("connected");
      await toggle(true);
      await check("connected, inspector open");
      // The frame lab beside it, with a decoded walk and its broken rule marked; it stays open from here on.
      await page.click("#framelab-toggle");
      await page.locator("#framelab").waitFor({ state: "visible" });
      await page.selectOption("#framelab-preset", "unmasked-client");
      await page.click("#framelab-decode");
      await page.locator('#framelab-status[data-outcome="violation"]').waitFor();
      await check("connected, inspector and frame lab open");
      await toggle(false);

      // The server gone: reconnecting, the help, a message waiting to send, the last count.
      await room.stop();
      await waitForState(page, "reconnecting");
      await page.locator("#server-help").waitFor({ state: "visible" });
      await page.locator("#input").fill("typed while the server is gone");
      await page.locator("#input").press("Enter");
      await page.locator("#messages li.message.pending").waitFor();
      await check("reconnecting, frame lab open");
      await toggle(true);
      await check("reconnecting, inspector and frame lab open");
      assertNoPageErrors(opened);
      return report;
    };
    const reports = await Promise.all(
      ["zh-CN", "en-US"].flatMap((locale) => (["light", "dark"] as const).map((scheme) => audit(locale, scheme))),
    );
    assert.deepEqual(reports.flat(), [], "axe-core found no WCAG 2.1 A/AA violations");
  });

  test('while disconnected the member list says "Online (—)" and the last count, not "Online (0)"', async (t) => {
    t.after(cleanUp);
    const room = await testServer();
    const zh = await testPage(browser(), `${room.httpUrl}/`);
    await testMember(room.port, "小红");
    const panel = (page: Page) =>
      page.evaluate(() => {
        const note = document.getElementById("users-note");
        return {
          heading: document.getElementById("users-heading")?.textContent ?? "",
          note: note === null || note.hidden ? null : note.textContent,
          listed: document.querySelectorAll("#users li.user").length,
        };
      });
    await zh.page.waitForFunction(() => document.getElementById("users-heading")?.textContent === "在线（2）");
    assert.deepEqual(await panel(zh.page), { heading: "在线（2）", note: null, listed: 2 });
    const en = await openIn(`${room.httpUrl}/`, "en-US");
    await en.page.waitForFunction(() => document.getElementById("users-heading")?.textContent === "Online (3)");

    await room.stop();
    for (const opened of [zh, en]) await waitForState(opened.page, "reconnecting");
    assert.deepEqual(await panel(zh.page), { heading: "在线（—）", note: "断线前 3 人在线", listed: 0 });
    assert.deepEqual(await panel(en.page), { heading: "Online (—)", note: "3 online when last connected", listed: 0 });
    assertNoPageErrors(zh, en);
  });

  test('own messages say "me" in English and 我 in Chinese', async (t) => {
    t.after(cleanUp);
    const room = await testServer();
    const zh = await testPage(browser(), `${room.httpUrl}/`);
    const en = await openIn(`${room.httpUrl}/`, "en-US");
    await waitForState(en.page, "connected");
    await typeMessage(zh.page, "from zh");
    await typeMessage(en.page, "from en");
    for (const opened of [zh, en]) await waitForConfirmed(opened.page, ["from zh", "from en"]);
    const badges = async (page: Page) =>
      (await readMessages(page)).map((message) => [message.text, message.mine, message.badge]);
    assert.deepEqual(await badges(zh.page), [
      ["from zh", true, "我"],
      ["from en", false, null],
    ]);
    assert.deepEqual(await badges(en.page), [
      ["from zh", false, null],
      ["from en", true, "me"],
    ]);
    assert.equal(await en.page.locator("#users li.me .me-badge").textContent(), "me");
    assertNoPageErrors(zh, en);
  });

  test("the message box: Enter sends, Shift+Enter breaks the line; a counter near 2,000 counts the line break", async (t) => {
    t.after(cleanUp);
    const room = await testServer();
    const observer = await testMember(room.port, "observer");
    const opened = await openIn(`${room.httpUrl}/`, "en-US");
    const { page } = opened;
    await waitForState(page, "connected");
    const input = page.locator("#input");
    assert.equal(await input.evaluate((element) => element.tagName), "TEXTAREA");

    await input.click();
    await page.keyboard.type("first line");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("second line");
    assert.equal(await input.inputValue(), "first line\nsecond line", "Shift+Enter did not send");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => (document.getElementById("input") as HTMLTextAreaElement).value === "");
    assert.equal((await observer.waitForMessage("first line\nsecond line")).text, "first line\nsecond line");
    await waitForConfirmed(page, ["first line\nsecond line"]);
    const shown = await page.evaluate(() => {
      const text = document.querySelector<HTMLElement>("#messages li.message .text")!;
      return {
        whiteSpace: getComputedStyle(text).whiteSpace,
        lines: text.getClientRects().length,
        height: text.offsetHeight,
      };
    });
    assert.equal(shown.whiteSpace, "pre-wrap", "the line break shows as one");
    const lineHeight = await page.evaluate(() =>
      parseFloat(getComputedStyle(document.querySelector("#messages .text")!).lineHeight),
    );
    assert.ok(shown.height >= 2 * lineHeight - 1, `two lines tall: ${shown.height} px for lines of ${lineHeight} px`);

    const counter = page.locator("#counter");
    await input.fill("a".repeat(1799));
    assert.equal(await counter.isHidden(), true, "far enough from the limit: no counter");
    await input.press("End");
    await page.keyboard.type("a");
    await page.waitForFunction(() => document.getElementById("counter")?.textContent === "1,800 / 2,000");
    await input.fill(`${"a".repeat(1000)}\n${"b".repeat(949)}`);
    await page.waitForFunction(() => document.getElementById("counter")?.textContent === "1,950 / 2,000");
    await input.fill(`${"a".repeat(1000)}\n\n${"b".repeat(999)}`);
    await page.waitForFunction(() => document.getElementById("counter")?.textContent === "2,001 / 2,000");
    assert.equal(await counter.getAttribute("data-over"), "true");
    await input.press("Enter");
    await page.waitForFunction(() => document.getElementById("alert")?.hidden === false);
    assert.match((await page.locator("#alert").textContent()) ?? "", /too long/);
    assert.equal((await input.inputValue()).length, 2001, "a refused message stays in the box");
    assertNoPageErrors(opened);
  });

  test("messages from an earlier day show their date; today's only the time", async (t) => {
    t.after(cleanUp);
    const room = await testServer();
    const member = await testMember(room.port, "小红");
    member.sayText("said today");
    await member.waitForMessage("said today");
    const twoDays = 2 * 24 * 60 * 60 * 1000;
    const zhToday = await openIn(`${room.httpUrl}/`, "zh-CN");
    // Two days on, as far as these pages know: the same message is from the day before yesterday.
    const zhLater = await openIn(`${room.httpUrl}/`, "zh-CN", { future: twoDays });
    const enLater = await openIn(`${room.httpUrl}/`, "en-US", { future: twoDays });
    const timeOf = async (page: Page) => {
      await waitForConfirmed(page, ["said today"]);
      return page.locator("#messages li.message .time").first().textContent();
    };
    assert.match((await timeOf(zhToday.page)) ?? "", /^\d\d:\d\d$/);
    assert.match((await timeOf(zhLater.page)) ?? "", /^\d{1,2}月\d{1,2}日 \d\d:\d\d$/);
    assert.match((await timeOf(enLater.page)) ?? "", /^[A-Z][a-z]{2} \d{1,2}, \d\d:\d\d\s[AP]M$/);
    assertNoPageErrors(zhToday, zhLater, enLater);
  });

  test("on a phone (390 × 844) the header is one row, in English and in Chinese, connected or not", async (t) => {
    t.after(cleanUp);
    const room = await testServer();
    const phone = { width: 390, height: 844 };
    const pages = [await openIn(`${room.httpUrl}/`, "en-US", { viewport: phone })];
    pages.push(await openIn(`${room.httpUrl}/`, "zh-CN", { viewport: phone }));
    // One row: every shown child of the header centred on the same line (they are of different heights).
    const header = (page: Page) =>
      page.evaluate(() => {
        const top = document.querySelector<HTMLElement>("header.top")!;
        const shown = [...top.children].filter((child) => child instanceof HTMLElement && !child.hidden);
        return {
          middles: shown.map((child) => {
            const box = child.getBoundingClientRect();
            return Math.round(box.top + box.height / 2);
          }),
          height: top.offsetHeight,
          children: shown.map((child) => child.id || child.tagName),
          overflows: top.scrollWidth > top.clientWidth,
        };
      });
    const assertOneRow = async (page: Page, label: string) => {
      const shown = await header(page);
      const spread = Math.max(...shown.middles) - Math.min(...shown.middles);
      assert.ok(spread <= 1, `${label}: every child on one row: ${JSON.stringify(shown)}`);
      assert.ok(shown.height < 60, `${label}: one row tall: ${JSON.stringify(shown)}`);
      assert.equal(shown.overflows, false, `${label}: nothing sticks out: ${JSON.stringify(shown)}`);
    };
    for (const opened of pages) {
      await waitForState(opened.page, "connected");
      await assertOneRow(opened.page, `connected, ${await opened.page.evaluate(() => document.documentElement.lang)}`);
    }
    await room.stop();
    for (const opened of pages) {
      await waitForState(opened.page, "reconnecting");
      // The retry button shows while waiting.
      await opened.page.locator("#retry").waitFor({ state: "visible" });
      await assertOneRow(
        opened.page,
        `reconnecting, ${await opened.page.evaluate(() => document.documentElement.lang)}`,
      );
    }
    assertNoPageErrors(...pages);
  });
});
