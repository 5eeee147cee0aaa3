// Who is who (README, "Identity"): a session per tab owns its name, and a
// message is yours when its sid is your welcome's `you`. Tested over real
// connections to server.ts in this process (and, where it is killed with
// SIGKILL and restarted, a server process); the grace of a name is tested
// with a short --name-grace and by waiting for the server's own `left`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join as joinPath } from "node:path";
import { ChatClient, asStored, useChatRooms } from "./support/chat-client.ts";
import { noRateLimit } from "./support/in-process.ts";
import { Identities, publicIdOf, sessionIsValid, withoutSecrets } from "../server.ts";

const { directory, start, spawn, stop, join } = useChatRooms({
  folderPrefix: "chat-identity-test-",
  config: noRateLimit,
  args: ["--message-rate", "100000", "--message-burst", "100000"],
});

/** A secret as the page makes one: 128 random bits, base64url. */
function newSession(): string {
  return randomBytes(16).toString("base64url");
}

function query(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key}=${encodeURIComponent(value)}`)
    .join("&");
}

/** What the contract says a sid is: base64url of the first 9 bytes of SHA-256(secret). */
function expectedSid(session: string): string {
  return createHash("sha256").update(session).digest().subarray(0, 9).toString("base64url");
}

describe("sessions and public ids", () => {
  test(
    "welcome.you is derived from the session (base64url of 9 bytes of SHA-256), " + "the same on every connection",
    async () => {
      const server = await start();
      const session = newSession();
      const first = await join(server, query({ session }));
      assert.equal(first.welcome.you, expectedSid(session));
      assert.equal(first.welcome.you.length, 12);
      assert.equal(publicIdOf(session), expectedSid(session));
      await first.leave();
      const again = await join(server, query({ session }));
      assert.equal(again.welcome.you, first.welcome.you);
      assert.deepEqual(again.welcome.members, [{ name: again.welcome.name, sid: again.welcome.you }]);
    },
  );

  test(
    "16-64 characters of [A-Za-z0-9_-] are a session; anything else is bad_session with a fresh identity, and the " +
      "connection stays open",
    async () => {
      assert.ok(sessionIsValid("a".repeat(16)) && sessionIsValid("A-_9".repeat(16)));
      for (const bad of [
        "a".repeat(15),
        "a".repeat(65),
        "has space 123456",
        "plus+plus+plus+1",
        "équipe-équipe-12",
        "",
      ]) {
        assert.equal(sessionIsValid(bad), false, JSON.stringify(bad));
      }
      const server = await start();
      for (const bad of ["short", "x".repeat(65), "sixteen chars!!!"]) {
        const client = await join(server, query({ session: bad, name: "Bad" }));
        // The error, then the replay of what the earlier clients said.
        const [error] = await client.sync();
        assert.equal(error?.code, "bad_session");
        assert.doesNotMatch(String(error.message), new RegExp(bad.replace(/[!]/g, "\\!")), "the value is not echoed");
        assert.notEqual(client.welcome.you, expectedSid(bad), "a fresh identity, not one derived from the bad value");
        const message = await client.sayAndAck(`m-${bad.length}`, "still here");
        assert.equal(message.sid, client.welcome.you);
        await client.leave();
      }
    },
  );

  test(
    "without a session the server makes a fresh identity every time, " + "and its name is free the moment it closes",
    async () => {
      const server = await start();
      const watcher = await join(server, query({ name: "Watcher" }));
      const a = await join(server, query({ name: "Ann" }));
      await watcher.expect("joined");
      await a.leave();
      assert.deepEqual(await watcher.expect("left"), { type: "left", name: "Ann", sid: a.welcome.you });
      const b = await join(server, query({ name: "Ann" }));
      assert.equal(b.welcome.name, "Ann");
      assert.notEqual(b.welcome.you, a.welcome.you);
    },
  );
});

describe("a name belongs to one identity", () => {
  test(
    "a holder who reloads keeps its name while another identity is waiting for it; away and back, never left and " +
      "joined",
    async () => {
      const server = await start();
      const teacher = newSession();
      const watcher = await join(server, query({ session: newSession(), name: "Watcher" }));
      const first = await join(server, query({ session: teacher, name: "Teacher" }));
      assert.deepEqual(await watcher.expect("joined"), { type: "joined", name: "Teacher", sid: expectedSid(teacher) });

      const other = await join(server, query({ session: newSession(), name: "Teacher" }));
      assert.equal(other.welcome.name, "Teacher2");
      assert.equal((await other.expect("error")).code, "name_taken");
      await watcher.expect("joined");

      await first.leave(); // the reload: the old page goes
      assert.deepEqual(await watcher.expect("away"), { type: "away", name: "Teacher", sid: expectedSid(teacher) });
      const during = await join(server, query({ session: newSession(), name: "Teacher" }));
      assert.equal(during.welcome.name, "Teacher3", "an away holder's name is not free");
      assert.equal((await during.expect("error")).code, "name_taken");
      const teacherRow = during.welcome.members.find((member) => member.name === "Teacher");
      assert.deepEqual(
        teacherRow,
        { name: "Teacher", sid: expectedSid(teacher), away: true },
        "the welcome says who is away",
      );
      await watcher.expect("joined");

      // The new page of the same tab: same session, whatever name it asks for.
      const reloaded = await join(server, query({ session: teacher, name: "Teacher", since: "0" }));
      assert.equal(reloaded.welcome.name, "Teacher");
      assert.equal(reloaded.welcome.you, expectedSid(teacher));
      assert.deepEqual(await reloaded.sync(), [], "no name_taken for the holder");
      assert.deepEqual(await watcher.sync(), [{ type: "back", name: "Teacher", sid: expectedSid(teacher) }]);

      const message = await reloaded.sayAndAck("t-1", "class starts");
      assert.equal(message.from, "Teacher");
      assert.equal(message.sid, expectedSid(teacher));
    },
  );

  test("default names are held too: after the grace a new identity may get 小明, but with another sid", async () => {
    const server = await start({ nameGraceMs: 300 });
    const watcher = await join(server, query({ session: newSession(), name: "Watcher" }));
    const xiaomingSession = newSession();
    const xiaoming = await join(server, query({ session: xiaomingSession }));
    assert.equal(xiaoming.welcome.name, "小明");
    await xiaoming.sayAndAck("x-1", "我是小明");
    await watcher.expect("joined");
    await watcher.expect("message");
    await xiaoming.leave();
    await watcher.expect("away");

    const meanwhile = await join(server, query({ session: newSession() }));
    assert.equal(meanwhile.welcome.name, "小红", "小明 is held through the grace");
    await watcher.expect("joined");

    // The grace ends on the server's clock: wait for its word.
    assert.deepEqual(await watcher.expect("left"), { type: "left", name: "小明", sid: expectedSid(xiaomingSession) });
    const later = await join(server, query({ session: newSession(), since: "0" }));
    assert.equal(later.welcome.name, "小明");
    assert.notEqual(later.welcome.you, expectedSid(xiaomingSession));
    const [replayed] = await later.replay();
    assert.equal(replayed?.from, "小明");
    assert.notEqual(replayed?.sid, later.welcome.you, "the old 小明's message is not the new 小明's");
  });

  test("--name-grace 0: a session's name is free as soon as its last connection closes", async () => {
    const server = await start({ nameGraceMs: 0 });
    const watcher = await join(server, query({ name: "Watcher" }));
    const session = newSession();
    const a = await join(server, query({ session, name: "Ann" }));
    await watcher.expect("joined");
    await a.leave();
    assert.deepEqual(await watcher.expect("left"), { type: "left", name: "Ann", sid: expectedSid(session) });
  });
});

describe("several connections, one identity", () => {
  test("two connections of one session share one name and one joined; away only when the last one closes", async () => {
    const server = await start({ nameGraceMs: 300 });
    const watcher = await join(server, query({ name: "Watcher" }));
    const session = newSession();
    const tabA = await join(server, query({ session, name: "Ming" }));
    const tabB = await join(server, query({ session, name: "Somebody else" }));
    assert.equal(tabB.welcome.name, "Ming", "the identity's name, no suffix");
    assert.equal(tabB.welcome.you, tabA.welcome.you);
    assert.deepEqual(await tabB.sync(), [], "no name_taken");
    assert.deepEqual(await watcher.sync(), [{ type: "joined", name: "Ming", sid: tabA.welcome.you }], "one joined");
    assert.deepEqual(
      tabB.welcome.members.map((member) => member.name).sort(),
      ["Ming", "Watcher"],
      "members list an identity once",
    );
    assert.deepEqual([...tabB.welcome.users].sort(), ["Ming", "Watcher"]);

    const message = await tabA.sayAndAck("two-tabs", "hello from A");
    assert.deepEqual(asStored(await tabB.expect("message")), message, "both connections get the room");

    tabA.destroy(); // a half-open connection dropped: the other one keeps the identity present
    await tabA.raw.waitForClose();
    assert.deepEqual(await watcher.sync(), [{ type: "message", ...message }]);
    assert.deepEqual(await tabB.sync(), []);
    await tabB.leave();
    assert.deepEqual(await watcher.expect("away"), { type: "away", name: "Ming", sid: tabA.welcome.you });
    assert.deepEqual(await watcher.expect("left"), { type: "left", name: "Ming", sid: tabA.welcome.you });
  });
});

describe("rename", () => {
  test(
    "{type:rename} → everyone gets renamed {sid, from, to}; the new name is used from then on, and the old one is " +
      "free",
    async () => {
      const server = await start();
      const a = await join(server, query({ session: newSession() }));
      const b = await join(server, query({ session: newSession() }));
      assert.deepEqual([a.welcome.name, b.welcome.name], ["小明", "小红"]);
      await a.expect("joined");
      b.send({ type: "rename", name: "  Bob " });
      const renamed = { type: "renamed", sid: b.welcome.you, from: "小红", to: "Bob" };
      assert.deepEqual(await a.expect("renamed"), renamed);
      assert.deepEqual(await b.expect("renamed"), renamed, "the one who renamed is told too");
      assert.deepEqual(await a.sync(), [], "one frame: no left, no joined");
      assert.equal((await b.sayAndAck("b-1", "I am Bob")).from, "Bob");
      await a.expect("message");

      const c = await join(server, query({ session: newSession() }));
      assert.equal(c.welcome.name, "小红", "the old name is free again");
      assert.deepEqual(
        c.welcome.members.map((member) => member.name),
        ["小明", "Bob", "小红"],
      );
    },
  );

  test(
    "a taken name is name_taken and an invalid one bad_name; " + "the name stays and nobody else hears of it",
    async () => {
      const server = await start();
      const a = await join(server, query({ session: newSession(), name: "Alice" }));
      const b = await join(server, query({ session: newSession(), name: "Bob" }));
      await a.expect("joined");
      for (const [name, code] of [
        ["Alice", "name_taken"],
        ["x".repeat(33), "bad_name"],
        ["bell\u0007", "bad_name"],
        ["\u202eevil", "bad_name"],
        ["   ", "bad_name"],
        [42, "bad_name"],
      ] as const) {
        b.send({ type: "rename", name });
        const error = await b.expect("error");
        assert.equal(error.code, code, JSON.stringify(name));
        assert.match(String(error.message), /Bob/, "the message says which name stays");
      }
      b.send({ type: "rename", name: "Bob" });
      assert.deepEqual(await b.sync(), [], "renaming to your own name changes nothing");
      assert.deepEqual(await a.sync(), []);
      assert.equal((await b.sayAndAck("b-1", "still Bob")).from, "Bob");
    },
  );

  test(
    "a name given up by a rename can be taken while its old holder is connected; the holder's reconnect keeps the " +
      "new one",
    async () => {
      const server = await start();
      const session = newSession();
      const a = await join(server, query({ session, name: "Old" }));
      a.send({ type: "rename", name: "New" });
      await a.expect("renamed");
      const other = await join(server, query({ session: newSession(), name: "Old" }));
      assert.equal(other.welcome.name, "Old");
      await a.leave();
      const back = await join(server, query({ session, name: "Old" }));
      assert.equal(back.welcome.name, "New");
    },
  );
});

describe("the secret stays secret", () => {
  test(
    "never in the history file, a broadcast, another client's frames or the log; " + "--trace shows session=…",
    async () => {
      const historyPath = joinPath(directory, "secret.jsonl");
      const server = await start({ historyFile: historyPath, trace: "full", verbose: true });
      const session = newSession();
      const watcher = await join(server, query({ name: "Watcher" }));
      const a = await join(server, query({ session, name: "Alice" }));
      a.send({ type: "rename", name: "Alicia" });
      await a.expect("renamed");
      await a.sayAndAck("secret-1", "hello");
      a.send({ type: "inspect", on: true });
      await a.sync();
      await a.leave();
      await watcher.expect("joined");
      await watcher.expect("renamed");
      await watcher.expect("message");
      await watcher.expect("away");

      const seenByOthers = watcher.raw.events.map((event) => (event.type === "text" ? event.text : "")).join("\n");
      assert.ok(seenByOthers.includes(expectedSid(session)), "others see the public id");
      assert.ok(!seenByOthers.includes(session), "and never the secret");
      const history = readFileSync(historyPath, "utf8");
      assert.ok(history.includes(expectedSid(session)), "the file stores the sid");
      assert.ok(!history.includes(session), "and never the secret");
      // Everything the server logged, and printed on the console (its trace) while it ran.
      const output = server.output();
      assert.match(output, /GET \/\?session=…&name=Alice HTTP\/1\.1/, "the trace shows the request line, redacted");
      assert.ok(!output.includes(session), "the secret is nowhere in what the server logs or prints");
    },
  );

  test("withoutSecrets redacts session=, however the name is spelled, and nothing else", () => {
    assert.equal(withoutSecrets("/?session=abc&name=x"), "/?session=…&name=x");
    assert.equal(withoutSecrets("/?name=x&sess%69on=abc"), "/?name=x&session=…");
    assert.equal(withoutSecrets("/echo"), "/echo");
    assert.equal(withoutSecrets("/?sessions=1&%zz=2"), "/?sessions=1&%zz=2");
  });
});

describe("bounded", () => {
  test(
    "identities over real connections: a flood of 500 random sessions keeps at most --max-connections of " +
      "them, the oldest grace ending first (10,000 in-process: test/room.test.ts)",
    { timeout: 120_000 },
    async () => {
      // The wire path of the bound; the 10,000-session flood is room.test.ts's, in-process. A small limit
      // keeps each welcome (which lists every identity) short.
      const limit = 30;
      // No keepalive: the watcher does not answer pings, and the flood may outlast an interval on a busy machine.
      const server = await start({ maxConnections: limit, maxConnectionsPerIp: 1000, keepaliveIntervalMs: 0 });
      const watcher = await join(server, query({ session: newSession(), name: "Watcher" }));
      const firstBatch: string[] = [];
      const total = 500;
      // Ten at once: each of them is told of the others, so a bigger batch costs more, not less.
      const batch = 10;
      for (let opened = 0; opened < total; opened += batch) {
        const sessions = Array.from({ length: batch }, newSession);
        if (opened === 0) firstBatch.push(...sessions);
        const flood = await Promise.all(
          sessions.map((session) => ChatClient.join(server.port, query({ session }), { ignorePresence: true })),
        );
        for (const client of flood) client.destroy();
        await Promise.all(flood.map((client) => client.raw.waitForClose()));
      }
      const last = await join(server, query({ session: newSession() }));
      assert.ok(
        last.welcome.members.length <= limit,
        `the room holds ${last.welcome.members.length} identities after ${total} sessions`,
      );
      // The watcher heard the first batch leave before anyone else did.
      const heard = await watcher.sync();
      const leftSids = heard.filter((message) => message.type === "left").map((message) => String(message.sid));
      assert.ok(leftSids.length >= total - limit, `${leftSids.length} graces ended early`);
      assert.deepEqual(new Set(leftSids.slice(0, firstBatch.length)), new Set(firstBatch.map(expectedSid)));
    },
  );

  test("Identities: one name per identity, the oldest away one first, and the limit", () => {
    const identities = new Identities(2);
    const a = identities.add("sid-a", "小明", true);
    assert.equal(identities.freeDefaultName(), "小红");
    assert.equal(identities.freeNameLike("小明"), "小明2");
    const b = identities.add("sid-b", "小红", true);
    assert.equal(identities.hasRoom(), false);
    identities.markAway(b, 10);
    identities.markAway(a, 20);
    assert.equal(identities.oldestAway(), b);
    identities.markBack(b);
    assert.equal(identities.oldestAway(), a);
    identities.rename(a, "阿明");
    assert.equal(identities.holderOf("小明"), undefined);
    assert.equal(identities.holderOf("阿明"), a);
    identities.remove(a);
    assert.equal(identities.size, 1);
    assert.equal(identities.hasRoom(), true);
    assert.equal(identities.freeDefaultName(), "小明");
  });
});

describe("history keeps who said it", () => {
  test("a server restarted with --history gives the same sid back: your old messages are still yours", async () => {
    const historyPath = joinPath(directory, "restart.jsonl");
    const session = newSession();
    const first = await spawn(["--history", historyPath]);
    const a = await join(first, query({ session, name: "Ann" }));
    const sent = await a.sayAndAck("r-1", "before the restart");
    await stop(first); // SIGKILL

    const second = await start({ historyFile: historyPath });
    const back = await join(second, query({ session, name: "Ann", since: "0", epoch: a.welcome.epoch }));
    assert.equal(back.welcome.you, a.welcome.you);
    const [replayed] = await back.replay();
    assert.deepEqual(replayed, sent);
    assert.equal(replayed?.sid, back.welcome.you);
  });

  test('a history line written before ids existed is replayed with sid "": nobody\'s own', async () => {
    const historyPath = joinPath(directory, "legacy.jsonl");
    const lines = [
      { type: "epoch", epoch: "0011223344556677" },
      { seq: 1, id: "old", from: "小明", text: "旧消息", time: 1_700_000_000_000 },
    ];
    writeFileSync(historyPath, lines.map((line) => JSON.stringify(line) + "\n").join(""));
    const server = await start({ historyFile: historyPath });
    const client = await join(server, query({ session: newSession(), since: "0" }));
    const [replayed] = await client.replay();
    assert.equal(replayed?.sid, "");
    assert.equal(replayed?.from, "小明");
  });
});
