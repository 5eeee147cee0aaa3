// The chat room's wire contract (README, "Wire contract"), tested over real
// WebSocket connections on 127.0.0.1: names, presence, messages,
// exactly-once, every error code, binary frames and the rate limit, against
// server.ts running in this process (a fresh server per test, so no state
// leaks between tests); and graceful shutdown on a signal, against server
// processes, since the signal is the point.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Opcode, TokenBucket, encodeClosePayload, type ServerConfig } from "../server.ts";
import {
  ChatClient,
  isClose,
  nameQuery as name,
  parseServerMessage,
  type ReceivedMessage,
} from "./support/chat-client.ts";
import { noRateLimit as unlimited, withServer, type InProcessServer } from "./support/in-process.ts";
import { spawnServer } from "./support/spawn.ts";
import { waitUntil, within } from "./support/wait.ts";

interface Room {
  server: InProcessServer;
  join(query?: string): Promise<ChatClient>;
}

/** Runs `body` against a fresh server; every client and the server are gone afterwards. */
async function withRoom(config: Partial<ServerConfig>, body: (room: Room) => Promise<void>): Promise<void> {
  await withServer(config, async (server) => {
    const clients: ChatClient[] = [];
    try {
      await body({
        server,
        join: async (query = "") => {
          const client = await ChatClient.join(server.port, query);
          clients.push(client);
          return client;
        },
      });
    } finally {
      for (const client of clients) client.destroy();
    }
  });
}

/** Sends (with `send`) until the answer is not rate_limited, polling: each
 * refusal is an answer, so nothing is waited for blindly. */
async function untilNotRateLimited(client: ChatClient, send: () => void): Promise<ReceivedMessage> {
  let answer: ReceivedMessage | undefined;
  const refused = () => answer === undefined || (answer.type === "error" && answer.code === "rate_limited");
  await waitUntil(
    () => !refused(),
    5000,
    "the room to take a message again",
    async () => {
      send();
      answer = await client.next();
    },
  );
  return answer!;
}

function sorted(names: string[]): string[] {
  return [...names].sort();
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

describe("names", () => {
  test("without a name: 小明, 小红, 小军, 小王, then 访客5 and 访客6; users lists everyone online, self included", async () => {
    await withRoom(unlimited, async (room) => {
      const expected = ["小明", "小红", "小军", "小王", "访客5", "访客6"];
      for (let index = 0; index < expected.length; index++) {
        const client = await room.join();
        assert.equal(client.welcome.name, expected[index]);
        assert.deepEqual(sorted(client.welcome.users), sorted(expected.slice(0, index + 1)));
        assert.deepEqual(await client.sync(), [], "no error for a default name");
      }
    });
  });

  test("a default name freed by a leaver is the first one given out again", async () => {
    await withRoom(unlimited, async (room) => {
      const xiaoming = await room.join();
      const xiaohong = await room.join();
      const xiaojun = await room.join();
      assert.deepEqual([xiaoming.welcome.name, xiaohong.welcome.name, xiaojun.welcome.name], ["小明", "小红", "小军"]);
      await xiaohong.leave();
      assert.deepEqual(await xiaoming.expect("joined"), { type: "joined", name: "小红", sid: xiaohong.welcome.you });
      assert.deepEqual(await xiaoming.expect("joined"), { type: "joined", name: "小军", sid: xiaojun.welcome.you });
      assert.deepEqual(await xiaoming.expect("left"), { type: "left", name: "小红", sid: xiaohong.welcome.you });
      const next = await room.join();
      assert.equal(next.welcome.name, "小红");
    });
  });

  test("a requested name is trimmed and used, up to 32 characters counted as code points", async () => {
    await withRoom(unlimited, async (room) => {
      const alice = await room.join(name("  Alice  "));
      assert.equal(alice.welcome.name, "Alice");
      assert.deepEqual(alice.welcome.users, ["Alice"]);
      const chinese = await room.join(name("张伟"));
      assert.equal(chinese.welcome.name, "张伟");
      const longest = "n".repeat(32);
      const exact = await room.join(name(longest));
      assert.equal(exact.welcome.name, longest);
      const emoji = "😀".repeat(32); // 64 UTF-16 units, 32 characters
      const emojiClient = await room.join(name(emoji));
      assert.equal(emojiClient.welcome.name, emoji);
      for (const client of [alice, chinese, exact, emojiClient]) {
        const errors = (await client.sync()).filter((message) => message.type === "error");
        assert.deepEqual(errors, [], "no error for a good name");
      }
    });
  });

  test("a name that is only spaces counts as no name: the default is given", async () => {
    await withRoom(unlimited, async (room) => {
      const client = await room.join(name("   "));
      assert.equal(client.welcome.name, "小明");
    });
  });

  test("a taken name gets a number suffix and a name_taken error; the connection stays open", async () => {
    await withRoom(unlimited, async (room) => {
      const first = await room.join(name("Alice"));
      assert.equal(first.welcome.name, "Alice");
      const second = await room.join(name("Alice"));
      assert.equal(second.welcome.name, "Alice2");
      const error = await second.expect("error");
      assert.equal(error.code, "name_taken");
      assert.equal(typeof error.message, "string");
      assert.deepEqual(await second.sync(), []);
      const third = await room.join(name(" Alice "));
      assert.equal(third.welcome.name, "Alice3");
      assert.equal((await third.expect("error")).code, "name_taken");
      assert.deepEqual(sorted(third.welcome.users), sorted(["Alice", "Alice2", "Alice3"]));

      // A default name asked for by hand is taken the same way: 小明 → 小明2.
      const xiaoming = await room.join();
      assert.equal(xiaoming.welcome.name, "小明");
      const copy = await room.join(name("小明"));
      assert.equal(copy.welcome.name, "小明2");
      assert.equal((await copy.expect("error")).code, "name_taken");
      assert.deepEqual(await copy.sync(), []);
    });
  });

  test("the suffix of a taken 32-character name keeps it within 32 characters", async () => {
    await withRoom(unlimited, async (room) => {
      const longest = "名".repeat(32);
      await room.join(name(longest));
      const second = await room.join(name(longest));
      assert.equal(second.welcome.name, "名".repeat(31) + "2");
      assert.equal((await second.expect("error")).code, "name_taken");
    });
  });

  test(
    "bad_name: control characters or more than 32 characters get a default name and an error; the connection " +
      "stays open",
    async () => {
      await withRoom(unlimited, async (room) => {
        const cases = [
          "a\u0007b", // BEL
          "a\nb", // a line break inside
          "a\u007fb", // DEL
          "a\u0085b", // a C1 control (NEL)
          "小明\u202e", // a bidirectional override
          "小明\u2060", // a word joiner: invisible
          "小\u00ad明", // a soft hyphen: invisible
          "小明\u061c", // the Arabic letter mark, a bidirectional control
          "小明\u200b", // a zero-width space
          "n".repeat(33),
          "😀".repeat(33),
        ];
        const defaults = ["小明", "小红", "小军", "小王", ...cases.slice(4).map((_, index) => `访客${index + 5}`)];
        for (let index = 0; index < cases.length; index++) {
          const client = await room.join(name(cases[index]!));
          assert.equal(client.welcome.name, defaults[index], `the default name for ${JSON.stringify(cases[index])}`);
          const error = await client.expect("error");
          assert.equal(error.code, "bad_name", `bad_name for ${JSON.stringify(cases[index])}`);
          assert.deepEqual(await client.sync(), [], "still open: a ping is answered");
        }
      });
    },
  );

  test("a name is freed when its owner leaves and given back to the reconnecting client", async () => {
    await withRoom(unlimited, async (room) => {
      const watcher = await room.join(name("Watcher"));
      const alice = await room.join(name("Alice"));
      assert.deepEqual(await watcher.expect("joined"), { type: "joined", name: "Alice", sid: alice.welcome.you });

      // While the old connection is still there, the name is not free.
      const early = await room.join(name("Alice"));
      assert.equal(early.welcome.name, "Alice2");
      assert.equal((await early.expect("error")).code, "name_taken");
      await early.leave();
      await watcher.expect("joined");
      assert.deepEqual(await watcher.expect("left"), { type: "left", name: "Alice2", sid: early.welcome.you });

      // A polite leave (close frame) frees it.
      await alice.leave();
      assert.deepEqual(await watcher.expect("left"), { type: "left", name: "Alice", sid: alice.welcome.you });
      const back = await room.join(name("Alice"));
      assert.equal(back.welcome.name, "Alice");
      assert.deepEqual(await back.sync(), [], "no name_taken");

      // So does a dropped TCP connection (no close frame at all).
      back.destroy();
      assert.deepEqual(await watcher.expect("joined"), { type: "joined", name: "Alice", sid: back.welcome.you });
      assert.deepEqual(await watcher.expect("left"), { type: "left", name: "Alice", sid: back.welcome.you });
      const again = await room.join(name("Alice"));
      assert.equal(again.welcome.name, "Alice");
      assert.deepEqual(await again.sync(), []);
    });
  });
});

// ---------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------

describe("presence", () => {
  test("joined and left go to everyone else, never to the one who joins or leaves", async () => {
    await withRoom(unlimited, async (room) => {
      const a = await room.join(name("A"));
      const b = await room.join(name("B"));
      assert.deepEqual(sorted(b.welcome.users), ["A", "B"]);
      assert.deepEqual(await a.sync(), [{ type: "joined", name: "B", sid: b.welcome.you }]);
      assert.deepEqual(await b.sync(), [], "the newcomer is not told about itself");

      const c = await room.join(name("C"));
      assert.deepEqual(await a.sync(), [{ type: "joined", name: "C", sid: c.welcome.you }]);
      assert.deepEqual(await b.sync(), [{ type: "joined", name: "C", sid: c.welcome.you }]);
      assert.deepEqual(await c.sync(), []);

      await b.leave();
      // The server notices the end of B's connection a moment after B does.
      assert.deepEqual(await a.expect("left"), { type: "left", name: "B", sid: b.welcome.you });
      assert.deepEqual(await c.expect("left"), { type: "left", name: "B", sid: b.welcome.you });
      assert.deepEqual(await a.sync(), []);
      assert.deepEqual(await c.sync(), []);

      const d = await room.join(name("D"));
      assert.deepEqual(sorted(d.welcome.users), ["A", "C", "D"], "a leaver is no longer listed");
    });
  });
});

// ---------------------------------------------------------------------------
// Messages, exactly-once, ping
// ---------------------------------------------------------------------------

describe("messages", () => {
  test("say is broadcast to everyone, sender included, with seq, id, sid, from, text and time", async () => {
    await withRoom(unlimited, async (room) => {
      const a = await room.join(name("A"));
      const b = await room.join(name("B"));
      await a.expect("joined");
      const before = Date.now();
      a.say("m-1", "你好, world");
      for (const client of [a, b]) {
        const message = await client.expect("message");
        assert.deepEqual(Object.keys(message).sort(), ["from", "id", "seq", "sid", "text", "time", "type"]);
        assert.equal(message.seq, 1);
        assert.equal(message.id, "m-1");
        assert.equal(message.sid, a.welcome.you, "the sender's public id");
        assert.equal(message.from, "A");
        assert.equal(message.text, "你好, world");
        assert.ok(typeof message.time === "number" && message.time >= before - 60_000, "time is a timestamp in ms");
      }
      b.say("m-2", "second");
      for (const client of [a, b]) {
        const message = await client.expect("message");
        assert.equal(message.seq, 2, "seq goes up by one");
        assert.equal(message.from, "B");
      }
      assert.deepEqual(await a.sync(), []);
      assert.deepEqual(await b.sync(), []);
    });
  });

  test(
    "text length: 1 and exactly 2000 characters are accepted, and 2000 emoji too; " + "2001 is text_too_long",
    async () => {
      await withRoom(unlimited, async (room) => {
        const a = await room.join();
        const accepted = ["x", "a".repeat(2000), "😀".repeat(2000), "字".repeat(2000), " padded "];
        for (const [index, text] of accepted.entries()) {
          a.say(`ok-${index}`, text);
          const message = await a.expect("message");
          assert.equal(message.text, text, `text ${index} comes back unchanged`);
          assert.equal(message.seq, index + 1);
        }
        for (const text of ["a".repeat(2001), "😀".repeat(2001)]) {
          a.say(`long-${text.length}`, text);
          assert.equal((await a.expect("error")).code, "text_too_long");
          assert.deepEqual(await a.sync(), [], "still open");
        }
      });
    },
  );

  test("exactly once: a retried id is not broadcast again; only the sender gets the stored copy, once", async () => {
    await withRoom(unlimited, async (room) => {
      const a = await room.join(name("A"));
      const b = await room.join(name("B"));
      await a.expect("joined");
      a.say("once", "hello");
      const original = await a.expect("message");
      assert.deepEqual(await b.expect("message"), original);

      // The retry (even with another text) gets the stored message back.
      a.say("once", "hello");
      a.say("once", "hello, edited");
      assert.deepEqual(await a.sync(), [original, original], "one stored copy per retry, nothing else");
      assert.deepEqual(await b.sync(), [], "the others get nothing new");

      // Another client sending that id also gets the stored copy, alone.
      b.say("once", "mine?");
      assert.deepEqual(await b.sync(), [original]);
      assert.deepEqual(await a.sync(), []);

      // The retries used no seq.
      a.say("twice", "next");
      assert.equal((await a.expect("message")).seq, 2);
      assert.equal((await b.expect("message")).seq, 2);
    });
  });

  test("ping gets a pong with the same t, to that client only", async () => {
    await withRoom(unlimited, async (room) => {
      const a = await room.join();
      const b = await room.join();
      await a.expect("joined");
      for (const t of [0, 42, 1.5, 1_700_000_000_000]) {
        a.send({ type: "ping", t });
        assert.deepEqual(await a.next(), { type: "pong", t });
      }
      assert.deepEqual(await b.sync(), [], "no pong for the others");
    });
  });
});

// ---------------------------------------------------------------------------
// Mistakes
// ---------------------------------------------------------------------------

describe("mistakes", () => {
  const cases: Array<{ code: string; frames: string[] }> = [
    { code: "bad_json", frames: ["not json", "{", "", '{"type":"say",}'] },
    { code: "bad_message", frames: ["[]", "42", "null", '"say"', "true"] },
    { code: "unknown_type", frames: ["{}", '{"type":"shout"}', '{"type":42}', '{"type":"SAY","id":"x","text":"y"}'] },
    {
      code: "bad_id",
      frames: [
        JSON.stringify({ type: "say", text: "no id" }),
        JSON.stringify({ type: "say", id: "", text: "empty id" }),
        JSON.stringify({ type: "say", id: 42, text: "number id" }),
        JSON.stringify({ type: "say", id: null, text: "null id" }),
        JSON.stringify({ type: "say", id: "i".repeat(129), text: "id too long" }),
      ],
    },
    {
      code: "empty_text",
      frames: [
        JSON.stringify({ type: "say", id: "e1" }),
        JSON.stringify({ type: "say", id: "e2", text: "" }),
        JSON.stringify({ type: "say", id: "e3", text: "   " }),
        JSON.stringify({ type: "say", id: "e4", text: " \n\t " }),
      ],
    },
    { code: "text_too_long", frames: [JSON.stringify({ type: "say", id: "t1", text: "a".repeat(2001) })] },
  ];

  for (const { code, frames } of cases) {
    test(`${code}: an error to the sender only, nothing sequenced, and the connection stays open`, async () => {
      await withRoom(unlimited, async (room) => {
        const a = await room.join();
        const b = await room.join();
        await a.expect("joined");
        for (const frame of frames) {
          a.send(frame);
          const error = await a.next();
          assert.equal(error.type, "error", `an error for ${frame.slice(0, 60)}`);
          assert.equal(error.code, code, `${code} for ${frame.slice(0, 60)}`);
          assert.ok(typeof error.message === "string" && error.message.length > 0, "a message for people");
          assert.deepEqual(await a.sync(), [], "open: a ping after the mistake is answered");
        }
        assert.equal(a.raw.closed, false);
        assert.deepEqual(await b.sync(), [], "the others saw nothing");
        a.say("after", "still here");
        assert.equal((await a.expect("message")).seq, 1, "no seq was used by a refused message");
      });
    });
  }

  test("a binary frame on / closes the connection with 1003; the others see left", async () => {
    await withRoom(unlimited, async (room) => {
      const a = await room.join(name("A"));
      const b = await room.join(name("B"));
      await a.expect("joined");
      a.raw.sendFrame(Opcode.Binary, Buffer.from(JSON.stringify({ type: "say", id: "bin", text: "binary" })));
      assert.equal(await a.closeCode(), 1003);
      await a.raw.waitForClose();
      assert.deepEqual(await b.expect("left"), { type: "left", name: "A", sid: a.welcome.you });
      assert.deepEqual(await b.sync(), [], "the binary message was not broadcast");
    });
  });
});

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

describe("rate limit", () => {
  test(
    "TokenBucket (rate 20, burst 40) on a clock of its own: 40 at once, then one per 50 ms, never more than 40 " +
      "saved",
    () => {
      let now = 1_000_000;
      const bucket = new TokenBucket(20, 40, () => now);
      const takeAll = () => {
        let taken = 0;
        while (bucket.take()) taken++;
        return taken;
      };
      assert.equal(takeAll(), 40, "the burst");
      assert.equal(bucket.take(), false);
      now += 49;
      assert.equal(bucket.take(), false, "not a whole token after 49 ms");
      now += 1;
      assert.equal(bucket.take(), true, "one after 50 ms");
      assert.equal(bucket.take(), false);
      now += 1000;
      assert.equal(takeAll(), 20, "20 in a second");
      now += 3_600_000;
      assert.equal(takeAll(), 40, "an hour of quiet saves up the burst, no more");
    },
  );

  test(
    "a burst of 100 says (default limits): some are rate_limited, the rest broadcast, and the connection stays " +
      "open",
    async () => {
      await withRoom({}, async (room) => {
        const a = await room.join(name("A"));
        const b = await room.join(name("B"));
        await a.expect("joined");
        for (let index = 0; index < 100; index++) a.say(`burst-${index}`, `message ${index}`);
        let accepted = 0;
        let limited = 0;
        const seqs: unknown[] = [];
        while (accepted + limited < 100) {
          const message = await a.next();
          if (message.type === "message") {
            accepted++;
            seqs.push(message.seq);
          } else {
            assert.equal(message.type, "error", JSON.stringify(message));
            assert.equal(message.code, "rate_limited");
            limited++;
          }
        }
        assert.ok(accepted >= 40, `the burst allowance (40) is accepted; accepted ${accepted}`);
        assert.ok(limited >= 1, "some were refused");
        assert.deepEqual(
          seqs,
          Array.from({ length: accepted }, (_, index) => index + 1),
          "accepted messages got consecutive seqs",
        );
        const seen = await b.sync();
        assert.equal(seen.length, accepted, "the others got exactly the accepted messages");
        assert.ok(seen.every((message) => message.type === "message"));

        assert.equal(a.raw.closed, false);
        // Once the bucket has a token again (20 a second), the same id is accepted, once; then a ping is answered.
        const after = await untilNotRateLimited(a, () => a.say("after", "calm again"));
        assert.equal(after.type, "message", JSON.stringify(after));
        assert.equal(after.seq, accepted + 1);
        assert.deepEqual(
          await untilNotRateLimited(a, () => a.send({ type: "ping", t: 7 })),
          { type: "pong", t: 7 },
          "still open",
        );
        assert.deepEqual(await b.sync(), [after], "the others got it once");
      });
    },
  );

  test("sustained flooding ends with close 1008", async () => {
    await withRoom({ messageRate: 2, messageBurst: 3 }, async (room) => {
      const a = await room.join(name("A"));
      const b = await room.join(name("B"));
      await a.expect("joined");
      // One say after the answer to the previous one, until the room gives up: at most 200.
      const answers = () => a.raw.events.filter((event) => event.type === "text").length;
      const before = answers();
      for (let index = 0; index < 200 && !a.raw.events.some(isClose); index++) {
        a.say(`flood-${index}`, `flood ${index}`);
        const answered = () => answers() > before + index || a.raw.events.some(isClose);
        await a.raw.waitFor(answered, 5000, `the answer to say ${index}`);
      }
      assert.equal(await a.closeCode(), 1008);
      const types: string[] = [];
      const codes: unknown[] = [];
      for (const event of a.raw.events) {
        if (event.type !== "text") continue;
        const message = parseServerMessage(event.text);
        types.push(message.type);
        if (message.type === "error") codes.push(message.code);
      }
      assert.ok(types.includes("message"), "the burst allowance was accepted first");
      assert.ok(
        codes.length > 0 && codes.every((code) => code === "rate_limited"),
        `rate_limited errors before the close: ${JSON.stringify(codes)}`,
      );
      await a.raw.waitForClose();
      for (;;) {
        const seen = await b.next();
        if (seen.type === "left") {
          assert.deepEqual(seen, { type: "left", name: "A", sid: a.welcome.you });
          break;
        }
        assert.equal(seen.type, "message", "B sees A's accepted messages, then A leave");
      }
    });
  });
});

// ---------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------

// Two processes, each waiting up to 2 s for a silent client: side by side.
describe("shutdown", { concurrency: true }, () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${signal}: every client gets close 1001 and the process exits with 0`, async () => {
      const server = await spawnServer(["--message-rate", "100000", "--message-burst", "100000"]);
      const clients: ChatClient[] = [];
      try {
        for (let index = 0; index < 3; index++) clients.push(await ChatClient.join(server.port));
        server.child.kill(signal);
        const codes = await Promise.all(clients.map((client) => client.closeCode()));
        assert.deepEqual(codes, [1001, 1001, 1001]);
        // The first two answer the close as a client should; the third stays
        // silent, and the server must not wait for it for ever.
        for (const client of clients.slice(0, 2)) client.raw.sendFrame(Opcode.Close, encodeClosePayload(1001));
        assert.equal(await within(server.exited, 15_000, "the server to exit"), 0);
        await Promise.all(clients.map((client) => client.raw.waitForClose()));
      } finally {
        for (const client of clients) client.destroy();
        await server.stop("SIGKILL");
      }
    });
  }
});
