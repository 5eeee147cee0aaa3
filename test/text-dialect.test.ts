// /text: the plain-text dialect of the tutorial this project grew from, in
// the same room as the JSON page. Its client is Debian's python3-websockets
// speaking as the tutorial's page does: "hello" is answered "收到,hello" to it
// alone; anything else it sends is said in the room; room messages reach it
// as "name:text", its own as "我:text". RFC 6455 §5.6: text frames only.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { binaries, requirePythonWebsockets, runJsonClient } from "./interop/tools.ts";
import { ChatClient, nameQuery } from "./support/chat-client.ts";
import { useServer } from "./support/in-process.ts";

/** The tutorial's page, in Python: connects to /text, says hello, speaks, listens; prints what it got as JSON. */
const tutorialPage = `
import asyncio, json, sys
import websockets

async def main(url, text):
    async with websockets.connect(url, compression=None) as ws:
        await ws.send("hello")
        answer = await asyncio.wait_for(ws.recv(), 10)
        await ws.send(text)
        own = await asyncio.wait_for(ws.recv(), 10)
        print(json.dumps({"answer": answer, "own": own}), flush=True)
        other = await asyncio.wait_for(ws.recv(), 10)
        print(json.dumps({"answer": answer, "own": own, "other": other}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
`;

describe("/text: the tutorial's plain-text page in the same room (RFC 6455 §5.6)", () => {
  const live = useServer();

  test('"hello" is answered "收到,hello" to that page alone; its text is said in the room; lines are "name:text" and "我:text"', async () => {
    requirePythonWebsockets();
    const server = live();
    const page = await ChatClient.join(server.port, nameQuery("小红"), { ignorePresence: true });
    await page.sync();
    const tutorial = runJsonClient<{ answer: string; own: string; other: string }>(
      "the tutorial's page (python websockets)",
      binaries.python,
      ["-c", tutorialPage, `ws://127.0.0.1:${server.port}/text?name=${encodeURIComponent("小明")}`, "你好"],
    );
    const said = await page.waitForMessage("你好");
    assert.equal(said.from, "小明", "said in the room under the tutorial page's name, with a seq");
    assert.ok(said.seq >= 1);
    await page.sayAndAck("json-1", "hi from the JSON page");
    const report = await tutorial;
    assert.equal(report.answer, "收到,hello");
    assert.equal(report.own, "我:你好");
    assert.equal(report.other, "小红:hi from the JSON page");
    const received = page.received().map((message) => String(message.type));
    assert.ok(!received.some((type) => type === "error"), "the JSON page never saw the hello");
    page.destroy();
  });
});
