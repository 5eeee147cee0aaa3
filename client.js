"use strict";
(() => {
  var __defProp = Object.defineProperty;
  var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
  var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);
  const SPACED_HEX = /^(?:[0-9a-f]{2}(?: [0-9a-f]{2})*)?$/;
  const MAX_TEXT_LENGTH = 2e3;
  function characterCount(text) {
    return Array.from(text).length;
  }
  function isRecord(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
  }
  function isStringArray(value) {
    return Array.isArray(value) && value.every((item) => typeof item === "string");
  }
  function isSeq(value) {
    return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
  }
  function readMember(value) {
    if (!isRecord(value) || typeof value.name !== "string" || typeof value.sid !== "string") return null;
    return { name: value.name, sid: value.sid, away: value.away === true };
  }
  function readMembers(value) {
    if (!Array.isArray(value)) return null;
    const members = [];
    for (const member of value.map(readMember)) {
      if (member === null) return null;
      members.push(member);
    }
    return members;
  }
  function isCount(value) {
    return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
  }
  function readWelcome(value) {
    const { name, you, seq, epoch, resumed, memberCount, online, presenceBatched, oldestSeq } = value;
    const members = readMembers(value.members);
    if (typeof name !== "string" || typeof you !== "string" || members === null) return null;
    if (typeof epoch !== "string" && typeof epoch !== "number") return null;
    return {
      type: "welcome",
      name,
      you,
      members,
      memberCount: isCount(memberCount) ? memberCount : members.length,
      online: isCount(online) ? online : members.filter((member) => !member.away).length,
      presenceBatched: presenceBatched === true,
      seq: isSeq(seq) ? seq : 0,
      oldestSeq: isCount(oldestSeq) ? oldestSeq : null,
      epoch: String(epoch),
      resumed: resumed === true
    };
  }
  function readPresenceSummary(value) {
    const { memberCount, online, joinedCount, leftCount } = value;
    const joined = readMembers(value.joined);
    const left = readMembers(value.left);
    if (!isCount(memberCount) || !isCount(online) || !isCount(joinedCount) || !isCount(leftCount)) return null;
    if (joined === null || left === null) return null;
    return { type: "presence", memberCount, online, joinedCount, joined, leftCount, left };
  }
  function readMembersPage(value) {
    const { offset, memberCount, online, presenceBatched } = value;
    const members = readMembers(value.members);
    if (!isCount(offset) || !isCount(memberCount) || !isCount(online) || members === null) return null;
    return { type: "members", offset, memberCount, online, presenceBatched: presenceBatched === true, members };
  }
  function readHistoryPage(value) {
    const { before, messages, more } = value;
    if (!isCount(before) || !Array.isArray(messages)) return null;
    const checked = [];
    for (const message of messages) {
      const read = isRecord(message) ? readChatMessage(message) : null;
      if (read !== null && read.seq < before) checked.push(read);
    }
    return { type: "history", before, messages: checked, more: more === true };
  }
  function readChatMessage(value) {
    const { seq, id, sid, from, text, time } = value;
    if (!isSeq(seq) || typeof from !== "string" || typeof text !== "string") return null;
    if (typeof time !== "number" || !Number.isFinite(time)) return null;
    return { seq, id: typeof id === "string" ? id : "", sid: typeof sid === "string" ? sid : "", from, text, time };
  }
  function readTraceReport(value) {
    const { direction, line, lines, frame } = value;
    if (direction === "handshake") return isStringArray(lines) ? { direction, lines } : null;
    if (direction === "note") return readTraceNote(value);
    if (direction !== "received" && direction !== "sent" || typeof line !== "string" || !isRecord(frame)) return null;
    const { fin, rsv1, rsv2, rsv3, opcode, opcodeName, masked, maskKey, lengthBits, length, onWire, payload } = frame;
    const flags = [fin, rsv1, rsv2, rsv3, masked];
    if (!flags.every((flag) => typeof flag === "boolean")) return null;
    if (typeof opcode !== "number" || !Number.isInteger(opcode) || opcode < 0 || opcode > 15) return null;
    if (typeof opcodeName !== "string" || lengthBits !== 7 && lengthBits !== 16 && lengthBits !== 64) return null;
    if (typeof length !== "number" || !Number.isSafeInteger(length) || length < 0) return null;
    if (maskKey !== null && (typeof maskKey !== "string" || !/^[0-9a-f]{8}$/.test(maskKey))) return null;
    if (typeof onWire !== "string" || typeof payload !== "string") return null;
    if (!SPACED_HEX.test(onWire) || !SPACED_HEX.test(payload)) return null;
    return {
      direction,
      line,
      frame: {
        fin: fin === true,
        rsv1: rsv1 === true,
        rsv2: rsv2 === true,
        rsv3: rsv3 === true,
        opcode,
        opcodeName,
        masked: masked === true,
        maskKey,
        lengthBits,
        length,
        onWire,
        payload
      }
    };
  }
  function readTraceNote(value) {
    const { of, line, note } = value;
    if (of !== "received" && of !== "sent" || typeof line !== "string" || !isRecord(note)) return null;
    const { compressed, binary, length, wireLength, payload, threshold, windowBits } = note;
    if (typeof compressed !== "boolean" || typeof binary !== "boolean") return null;
    if (!isCount(length) || !isCount(wireLength) || typeof payload !== "string" || !SPACED_HEX.test(payload)) return null;
    if (threshold !== void 0 && !isCount(threshold)) return null;
    if (windowBits !== void 0 && !isCount(windowBits)) return null;
    const fields = { compressed, binary, length, wireLength, payload };
    if (threshold !== void 0) fields.threshold = threshold;
    if (windowBits !== void 0) fields.windowBits = windowBits;
    return { direction: "note", of, line, note: fields };
  }
  function readPresence(value) {
    const { type, name, sid } = value;
    if (type !== "joined" && type !== "left" && type !== "away" && type !== "back") return null;
    return typeof name === "string" && typeof sid === "string" ? { type, name, sid } : null;
  }
  const frameReaders = {
    welcome: readWelcome,
    message: (value) => {
      const message = readChatMessage(value);
      return message === null ? null : { type: "message", message };
    },
    pong: (value) => ({ type: "pong", t: typeof value.t === "number" && Number.isFinite(value.t) ? value.t : null }),
    joined: readPresence,
    left: readPresence,
    away: readPresence,
    back: readPresence,
    presence: readPresenceSummary,
    members: readMembersPage,
    history: readHistoryPage,
    // The frame lab's answer: the lines are the server's own words, shown as they are.
    decoded: (value) => {
      const { lines, outcome } = value;
      if (!isStringArray(lines)) return null;
      if (outcome !== "valid" && outcome !== "incomplete" && outcome !== "violation") return null;
      return { type: "decoded", lines, outcome };
    },
    renamed: (value) => {
      const { sid, from, to } = value;
      if (typeof sid !== "string" || typeof from !== "string" || typeof to !== "string") return null;
      return { type: "renamed", sid, from, to };
    },
    error: (value) => {
      const { code, message, id } = value;
      return {
        type: "error",
        code: typeof code === "string" ? code : "unknown",
        message: typeof message === "string" ? message : "",
        id: typeof id === "string" ? id : null
      };
    },
    trace: (value) => {
      const trace = readTraceReport(value);
      return trace === null ? null : { type: "trace", trace };
    }
  };
  function parseServerFrame(data) {
    if (typeof data !== "string") return null;
    let value;
    try {
      value = JSON.parse(data);
    } catch {
      return null;
    }
    if (!isRecord(value) || typeof value.type !== "string") return null;
    if (!Object.prototype.hasOwnProperty.call(frameReaders, value.type)) return null;
    return frameReaders[value.type](value);
  }
  const STORAGE_KEYS = {
    outbox: "chatRoom.outbox",
    transcript: "chatRoom.transcript",
    name: "chatRoom.name",
    /** This tab's secret: who we are to the server. Never shown, never sent but in the socket URL. */
    session: "chatRoom.session",
    /** Our public id from the last welcome, so our own messages show as ours before the next one. */
    you: "chatRoom.you",
    /** true while the frame inspector is open, so a reload opens it again (and asks for the handshake). */
    inspector: "chatRoom.inspector",
    /** true while the frame lab is open, so a reload keeps it open. */
    frameLab: "chatRoom.frameLab"
  };
  function createMemoryStorage() {
    const values = /* @__PURE__ */ new Map();
    return {
      getItem: (key) => values.get(key) ?? null,
      setItem: (key, value) => {
        values.set(key, value);
      },
      removeItem: (key) => {
        values.delete(key);
      }
    };
  }
  function readStoredJson(storage, key) {
    try {
      const text = storage.getItem(key);
      return text === null ? null : JSON.parse(text);
    } catch {
      return null;
    }
  }
  function writeStoredJson(storage, key, value) {
    try {
      storage.setItem(key, JSON.stringify(value));
    } catch {
    }
  }
  function reconnectDelay(attempt, random, baseMs = 1e3, capMs = 3e4) {
    const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
    return Math.floor(random() * ceiling);
  }
  class Backoff {
    constructor(random = Math.random, baseMs = 1e3, capMs = 3e4) {
      __publicField(this, "failedAttempts", 0);
      __publicField(this, "random");
      __publicField(this, "baseMs");
      __publicField(this, "capMs");
      this.random = random;
      this.baseMs = baseMs;
      this.capMs = capMs;
    }
    /** Attempts made since the last reset; the first retry after a drop is attempt 1. */
    get attempts() {
      return this.failedAttempts;
    }
    /** The delay before the next attempt; calling it counts that attempt. */
    next() {
      const delay = reconnectDelay(this.failedAttempts, this.random, this.baseMs, this.capMs);
      this.failedAttempts += 1;
      return delay;
    }
    reset() {
      this.failedAttempts = 0;
    }
  }
  function randomBytes(source, random) {
    const bytes = new Uint8Array(16);
    if (typeof source?.getRandomValues === "function") source.getRandomValues(bytes);
    else for (let index = 0; index < bytes.length; index++) bytes[index] = Math.floor(random() * 256);
    return bytes;
  }
  function createMessageId(source = globalThis.crypto, random = Math.random) {
    if (typeof source?.randomUUID === "function") return source.randomUUID();
    return Array.from(randomBytes(source, random), (byte) => byte.toString(16).padStart(2, "0")).join("");
  }
  function isOutgoingMessage(value) {
    return isRecord(value) && typeof value.id === "string" && typeof value.text === "string" && typeof value.createdAt === "number";
  }
  class Outbox {
    constructor(storage) {
      __publicField(this, "storage");
      __publicField(this, "waiting", []);
      this.storage = storage;
      const stored = readStoredJson(storage, STORAGE_KEYS.outbox);
      if (isRecord(stored) && Array.isArray(stored.pending)) this.waiting = stored.pending.filter(isOutgoingMessage);
    }
    /** Oldest first, which is the order they must be sent in. */
    get pending() {
      return this.waiting;
    }
    add(text, id, createdAt) {
      const message = { id, text, createdAt };
      this.waiting.push(message);
      this.save();
      return message;
    }
    isPending(id) {
      return this.waiting.some((message) => message.id === id);
    }
    /** The server sent the message back: it is in the history now. Returns false for unknown ids. */
    acknowledge(id) {
      return this.remove(id);
    }
    /** The server refused the message for good (too long, empty): sending it again would not help. */
    discard(id) {
      return this.remove(id);
    }
    remove(id) {
      if (!this.isPending(id)) return false;
      this.waiting = this.waiting.filter((message) => message.id !== id);
      this.save();
      return true;
    }
    save() {
      writeStoredJson(this.storage, STORAGE_KEYS.outbox, { pending: this.waiting });
    }
  }
  function createSessionSecret(source = globalThis.crypto, random = Math.random) {
    let binary = "";
    for (const byte of randomBytes(source, random)) binary += String.fromCharCode(byte);
    return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  }
  function sessionIsValid(value) {
    return /^[A-Za-z0-9_-]{16,64}$/.test(value);
  }
  class TabSession {
    constructor(storage, channel, createSecret, onReplaced) {
      __publicField(this, "storage");
      __publicField(this, "createSecret");
      /** Tells one tab from another, for as long as this page lives. */
      __publicField(this, "tabId");
      __publicField(this, "current");
      __publicField(this, "onReplaced");
      this.storage = storage;
      this.createSecret = createSecret;
      this.onReplaced = onReplaced;
      this.tabId = createSecret();
      let stored = null;
      try {
        stored = storage.getItem(STORAGE_KEYS.session);
      } catch {
      }
      this.current = stored !== null && sessionIsValid(stored) ? stored : this.replace();
      if (channel === null) return;
      channel.listen((message) => {
        if (!isRecord(message) || message.session !== this.current) return;
        if (message.type === "using" && message.tab !== this.tabId) {
          channel.post({ type: "taken", session: this.current, to: message.tab });
        } else if (message.type === "taken" && message.to === this.tabId) {
          this.replace();
          this.onReplaced();
        }
      });
      channel.post({ type: "using", session: this.current, tab: this.tabId });
    }
    get secret() {
      return this.current;
    }
    replace() {
      this.current = this.createSecret();
      try {
        this.storage.setItem(STORAGE_KEYS.session, this.current);
        this.storage.removeItem(STORAGE_KEYS.you);
      } catch {
      }
      return this.current;
    }
  }
  const TRANSCRIPT_LIMIT = 300;
  function isTranscriptEntry(value) {
    if (!isRecord(value) || typeof value.key !== "string") return false;
    if (value.kind === "message") {
      return typeof value.epoch === "string" && isRecord(value.message) && readChatMessage(value.message) !== null;
    }
    if (value.kind !== "notice" || typeof value.time !== "number") return false;
    const { notice } = value;
    if (notice === "presence") return isCount(value.joined) && isCount(value.left);
    const knownNotice = notice === "joined" || notice === "left" || notice === "gap";
    return (knownNotice || notice === "renamed" && typeof value.to === "string") && typeof value.name === "string";
  }
  class Transcript {
    constructor(storage) {
      __publicField(this, "storage");
      __publicField(this, "lines", []);
      __publicField(this, "currentEpoch", null);
      /** The highest seq shown in the current epoch; 0 before the first. */
      __publicField(this, "highestSeq", 0);
      /** Seqs of the current epoch that are on screen, to ignore a message that arrives twice. */
      __publicField(this, "shownSeqs", /* @__PURE__ */ new Set());
      /**
       * Seqs up to here were dropped to respect the limit; a message that arrives
       * unasked with one of them counts as already seen. Only an older page the
       * user asked for brings them back.
       */
      __publicField(this, "droppedThroughSeq", 0);
      /** Lines from older pages: the user asked for them, so they are kept on top of TRANSCRIPT_LIMIT. */
      __publicField(this, "olderLines", 0);
      __publicField(this, "nextKeyNumber", 1);
      this.storage = storage;
      const stored = readStoredJson(storage, STORAGE_KEYS.transcript);
      if (!isRecord(stored) || typeof stored.epoch !== "string" || !Array.isArray(stored.entries)) return;
      this.currentEpoch = stored.epoch;
      this.lines = stored.entries.filter(isTranscriptEntry);
      this.droppedThroughSeq = isSeq(stored.droppedThroughSeq) ? stored.droppedThroughSeq : 0;
      this.nextKeyNumber = isSeq(stored.nextKeyNumber) ? stored.nextKeyNumber : this.lines.length + 1;
      this.highestSeq = isSeq(stored.lastSeq) ? stored.lastSeq : 0;
      for (const line of this.lines) {
        if (line.kind === "message" && line.epoch === this.currentEpoch) {
          this.shownSeqs.add(line.message.seq);
          this.highestSeq = Math.max(this.highestSeq, line.message.seq);
        }
      }
    }
    get entries() {
      return this.lines;
    }
    get epoch() {
      return this.currentEpoch;
    }
    get lastSeq() {
      return this.highestSeq;
    }
    /** The lowest seq of the current epoch on screen: older pages are asked for from below it. Null if none. */
    get oldestShownSeq() {
      for (const line of this.lines) {
        if (line.kind === "message" && line.epoch === this.currentEpoch) return line.message.seq;
      }
      return null;
    }
    /** Null before the first welcome: then there is nothing to resume. */
    resumePoint() {
      return this.currentEpoch === null ? null : { since: this.highestSeq, epoch: this.currentEpoch };
    }
    /**
     * Takes in the epoch of a new welcome. "first": this tab had never connected.
     * "resumed": the server continues right after our last seq. "gap": it could
     * not, so a notice marks where messages may be missing. If the epoch changed,
     * the old seqs are forgotten too; otherwise the new history's seq 1, 2, 3...
     * would be mistaken for messages already on screen.
     */
    welcome(epoch, resumed, time) {
      if (this.currentEpoch === null) {
        this.currentEpoch = epoch;
        this.save();
        return "first";
      }
      if (resumed && epoch === this.currentEpoch) return "resumed";
      if (epoch !== this.currentEpoch) {
        this.currentEpoch = epoch;
        this.highestSeq = 0;
        this.droppedThroughSeq = 0;
        this.shownSeqs.clear();
      }
      const lastLine = this.lines[this.lines.length - 1];
      if (lastLine?.kind !== "notice" || lastLine.notice !== "gap") {
        this.lines.push({ kind: "notice", key: this.newKey(), notice: "gap", name: "", time });
      }
      this.save();
      return "gap";
    }
    /** Puts the message in seq order. Returns false if it was already shown (or cannot be placed yet). */
    addMessage(message) {
      if (message.seq <= this.droppedThroughSeq || !this.place(message)) return false;
      this.dropOldestBeyondLimit();
      this.save();
      return true;
    }
    /**
     * A page of older messages the user asked for: each goes in seq order above
     * what is shown, those already shown are skipped, and none is ever a gap.
     * They are kept however many lines there are; only the newest
     * TRANSCRIPT_LIMIT lines are stored. Returns how many were added.
     */
    addOlder(messages) {
      let added = 0;
      for (const message of [...messages].sort((a, b) => b.seq - a.seq)) if (this.place(message)) added += 1;
      if (added === 0) return 0;
      this.olderLines += added;
      const oldest = this.oldestShownSeq;
      if (oldest !== null) this.droppedThroughSeq = Math.min(this.droppedThroughSeq, oldest - 1);
      this.save();
      return added;
    }
    addNotice(notice, name, time) {
      this.pushNotice({ kind: "notice", key: this.newKey(), notice, name, time });
    }
    /** One line for a rename: "小红 is now Bob". */
    addRename(from, to, time) {
      this.pushNotice({ kind: "notice", key: this.newKey(), notice: "renamed", name: from, to, time });
    }
    /**
     * A large room's summary: "12 joined, 3 left". Summaries in a row with
     * nothing between them add up in one line, so a busy room's comings and
     * goings never push the conversation off the screen.
     */
    addPresence(joined, left, time) {
      if (joined === 0 && left === 0) return;
      const lastLine = this.lines[this.lines.length - 1];
      if (lastLine?.kind === "notice" && lastLine.notice === "presence") {
        this.lines[this.lines.length - 1] = {
          ...lastLine,
          joined: lastLine.joined + joined,
          left: lastLine.left + left,
          time
        };
        this.save();
        return;
      }
      this.pushNotice({ kind: "notice", key: this.newKey(), notice: "presence", joined, left, time });
    }
    /** Puts a message of the current epoch in seq order; false if it is shown already or there is no epoch yet. */
    place(message) {
      const epoch = this.currentEpoch;
      if (epoch === null || this.shownSeqs.has(message.seq)) return false;
      let position = this.lines.length;
      for (let index = this.lines.length - 1; index >= 0; index--) {
        const line = this.lines[index];
        if (line.kind === "notice") continue;
        if (line.epoch !== epoch || line.message.seq < message.seq) break;
        position = index;
      }
      this.lines.splice(position, 0, { kind: "message", key: this.newKey(), epoch, message });
      this.shownSeqs.add(message.seq);
      this.highestSeq = Math.max(this.highestSeq, message.seq);
      return true;
    }
    pushNotice(entry) {
      this.lines.push(entry);
      this.dropOldestBeyondLimit();
      this.save();
    }
    dropOldestBeyondLimit() {
      while (this.lines.length > TRANSCRIPT_LIMIT + this.olderLines) {
        const dropped = this.lines.shift();
        if (dropped.kind === "message" && dropped.epoch === this.currentEpoch) {
          this.shownSeqs.delete(dropped.message.seq);
          this.droppedThroughSeq = Math.max(this.droppedThroughSeq, dropped.message.seq);
        }
      }
    }
    newKey() {
      const key = `line-${this.nextKeyNumber}`;
      this.nextKeyNumber += 1;
      return key;
    }
    /** Stores the newest TRANSCRIPT_LIMIT lines; after a reload, the ones left out count as dropped. */
    save() {
      const cut = Math.max(0, this.lines.length - TRANSCRIPT_LIMIT);
      let droppedThroughSeq = this.droppedThroughSeq;
      for (const line of this.lines.slice(0, cut)) {
        if (line.kind === "message" && line.epoch === this.currentEpoch) {
          droppedThroughSeq = Math.max(droppedThroughSeq, line.message.seq);
        }
      }
      writeStoredJson(this.storage, STORAGE_KEYS.transcript, {
        epoch: this.currentEpoch,
        lastSeq: this.highestSeq,
        droppedThroughSeq,
        nextKeyNumber: this.nextKeyNumber,
        entries: cut === 0 ? this.lines : this.lines.slice(cut)
      });
    }
  }
  function countNewBelow(entries, lastReadKey) {
    if (lastReadKey === null) return 0;
    const read = entries.findIndex((entry) => entry.key === lastReadKey);
    return entries.slice(read + 1).filter((entry) => entry.kind === "message").length;
  }
  class HistoryPager {
    constructor() {
      __publicField(this, "phase", { name: "closed" });
    }
    /** A welcome: `oldestSeq` null means the server sends its whole history and has no pages. */
    welcome(oldestSeq) {
      this.phase = { name: "ready", floor: oldestSeq ?? Infinity };
    }
    /** The connection is gone, and with it any answer to a request on it. */
    close() {
      this.phase = { name: "closed" };
    }
    /** What to offer, given the oldest seq shown in the current epoch (null: none). */
    status(oldestShown) {
      const { phase } = this;
      if (phase.name === "closed") return "unavailable";
      if (phase.name === "loading") return "loading";
      return oldestShown !== null && oldestShown > phase.floor ? "available" : "exhausted";
    }
    /** The `before` to ask for now, or null when there is nothing to ask (or a request is out). */
    ask(oldestShown) {
      const { phase } = this;
      if (phase.name !== "ready" || this.status(oldestShown) !== "available" || oldestShown === null) return null;
      this.phase = { name: "loading", floor: phase.floor, before: oldestShown };
      return oldestShown;
    }
    /** An answer: `more: false` means nothing older than its messages (or than `before`) is kept. */
    answered(page) {
      const { phase } = this;
      if (phase.name === "closed") return;
      let floor = phase.floor;
      if (!page.more) floor = Math.max(floor, Math.min(page.before, ...page.messages.map((message) => message.seq)));
      this.phase = { name: "ready", floor };
    }
    /** The request was refused (rate_limited, say): the user may ask again. */
    refused() {
      const { phase } = this;
      if (phase.name === "loading") this.phase = { name: "ready", floor: phase.floor };
    }
  }
  class MemberList {
    constructor() {
      __publicField(this, "list", []);
      __publicField(this, "total", 0);
      __publicField(this, "onlineCount", 0);
      __publicField(this, "batched", false);
      __publicField(this, "mayShowLeavers", false);
      /** Whether the list and counts are the server's: not before the first welcome, nor without a connection. */
      __publicField(this, "isKnown", false);
      /** How many were online when the connection was lost; null before the first welcome. */
      __publicField(this, "onlineWhenLost", null);
      /** The offset asked for in a `members` request that has not been answered; null when none is out. */
      __publicField(this, "askedOffset", null);
    }
    get members() {
      return this.list;
    }
    /** Everyone in the room, away or not. */
    get memberCount() {
      return this.total;
    }
    /** Those in the room with a connection open; 0 while not known. */
    get online() {
      return this.onlineCount;
    }
    /**
     * Whether the counts are the server's now. Without a connection nobody is
     * known to be here, and "0 online" would read as "everyone left".
     */
    get known() {
      return this.isKnown;
    }
    /** The online count now, or while not known, the last one there was (null if there never was one). */
    get lastKnownOnline() {
      return this.isKnown ? this.onlineCount : this.onlineWhenLost;
    }
    /** Whether joins and leaves come summed up once a second (a large room) rather than one frame each. */
    get presenceBatched() {
      return this.batched;
    }
    get status() {
      if (this.mayShowLeavers) return "stale";
      return this.list.length >= this.total ? "complete" : "partial";
    }
    /** Whether a `members` request is out. */
    get loading() {
      return this.askedOffset !== null;
    }
    /** The offset the next `members` request would ask for: from the start for a stale list. Null: nothing to ask. */
    get nextOffset() {
      switch (this.status) {
        case "complete":
          return null;
        case "partial":
          return this.list.length;
        case "stale":
          return 0;
      }
    }
    /** The welcome: the first page of the room, and the counts. */
    welcome(welcome) {
      this.replace(welcome.members, welcome.memberCount, welcome.online, welcome.presenceBatched);
    }
    /** No connection: nobody is known to be here until the next welcome; the last count is remembered. */
    clear() {
      if (this.isKnown) this.onlineWhenLost = this.onlineCount;
      this.replace([], 0, 0, false);
      this.isKnown = false;
    }
    /** The offset to send in a `members` request now, or null (nothing to ask, or one is out). */
    ask() {
      if (this.askedOffset !== null) return null;
      this.askedOffset = this.nextOffset;
      return this.askedOffset;
    }
    /** The request was refused: the user may ask again. */
    refused() {
      this.askedOffset = null;
    }
    /**
     * A page of the list. From 0 it is the list: the server also sends that
     * unasked, whole, when a large room became small. Later pages add to it.
     */
    page(page) {
      if (page.offset === 0) {
        this.replace(page.members, page.memberCount, page.online, page.presenceBatched);
        return;
      }
      const shown = new Set(this.list.map((member) => member.sid));
      this.list = [...this.list, ...page.members.filter((member) => !shown.has(member.sid))];
      this.total = page.memberCount;
      this.onlineCount = page.online;
      this.batched = page.presenceBatched;
      this.askedOffset = null;
    }
    /** One change in a small room (joined, left, away, back), with the counts kept by hand. */
    presence({ type, name, sid }) {
      const index = this.list.findIndex((member) => member.sid === sid);
      const shown = index === -1 ? null : this.list[index];
      switch (type) {
        case "joined": {
          if (shown !== null) return;
          const wasWhole = this.list.length >= this.total;
          this.total += 1;
          this.onlineCount += 1;
          if (wasWhole) this.list.push({ name, sid, away: false });
          return;
        }
        case "left":
          if (shown !== null) this.list.splice(index, 1);
          this.total = Math.max(0, this.total - 1);
          if (shown !== null && !shown.away) this.onlineCount = Math.max(0, this.onlineCount - 1);
          return;
        case "away":
        case "back": {
          const away = type === "away";
          if (shown !== null && shown.away === away) return;
          this.onlineCount = Math.max(0, this.onlineCount + (away ? -1 : 1));
          if (shown !== null) this.list[index] = { ...shown, name, away };
          return;
        }
      }
    }
    /**
     * A large room's summary. Newcomers join the list only if it was the whole
     * room (otherwise they are beyond its end, where "more" finds them); those
     * named as gone leave it, even if also named as new (they came and went).
     */
    summary(summary) {
      const wasComplete = this.status === "complete";
      this.total = summary.memberCount;
      this.onlineCount = summary.online;
      this.batched = true;
      const gone = new Set(summary.left.map((member) => member.sid));
      if (wasComplete) {
        const shown = new Set(this.list.map((member) => member.sid));
        for (const member of summary.joined) {
          if (!shown.has(member.sid)) this.list.push(member);
        }
      }
      this.list = this.list.filter((member) => !gone.has(member.sid));
      if (summary.leftCount > summary.left.length) this.mayShowLeavers = true;
    }
    rename(sid, to) {
      this.list = this.list.map((member) => member.sid === sid ? { ...member, name: to } : member);
    }
    replace(members, total, online, batched) {
      this.list = members;
      this.total = total;
      this.onlineCount = online;
      this.batched = batched;
      this.mayShowLeavers = false;
      this.askedOffset = null;
      this.isKnown = true;
    }
  }
  class Heartbeat {
    constructor(options) {
      __publicField(this, "options");
      __publicField(this, "pingTimer", null);
      __publicField(this, "deadlineTimer", null);
      this.options = options;
    }
    start() {
      this.stop();
      this.schedulePing();
    }
    stop() {
      if (this.pingTimer !== null) this.options.timers.clearTimeout(this.pingTimer);
      if (this.deadlineTimer !== null) this.options.timers.clearTimeout(this.deadlineTimer);
      this.pingTimer = null;
      this.deadlineTimer = null;
    }
    /** A frame arrived: the connection is alive. */
    noteActivity() {
      if (this.deadlineTimer !== null) this.options.timers.clearTimeout(this.deadlineTimer);
      this.deadlineTimer = null;
    }
    /** Pings right away, for moments when the connection is likely to have died (network change, waking up). */
    probe() {
      if (this.pingTimer !== null) this.options.timers.clearTimeout(this.pingTimer);
      this.ping();
    }
    schedulePing() {
      this.pingTimer = this.options.timers.setTimeout(() => this.ping(), this.options.intervalMs);
    }
    ping() {
      const { timers } = this.options;
      this.pingTimer = null;
      this.options.sendPing(timers.now());
      if (this.deadlineTimer === null) {
        this.deadlineTimer = timers.setTimeout(() => {
          this.stop();
          this.options.onSilence();
        }, this.options.timeoutMs);
      }
      this.schedulePing();
    }
  }
  const RESEND_LATER_CODES = /* @__PURE__ */ new Set(["rate_limited", "storage_failed"]);
  const DEFAULT_TIMING = {
    heartbeatIntervalMs: 1e4,
    heartbeatTimeoutMs: 5e3,
    connectTimeoutMs: 1e4,
    stableAfterMs: 1e4,
    rateLimitRetryMs: 2e3,
    backoffBaseMs: 1e3,
    backoffCapMs: 3e4
  };
  function buildSocketUrl(serverUrl, session, name, resumePoint, inspect = false) {
    const parameters = [];
    if (session !== null) parameters.push(`session=${encodeURIComponent(session)}`);
    if (name !== null) parameters.push(`name=${encodeURIComponent(name)}`);
    if (resumePoint !== null) {
      parameters.push(`since=${resumePoint.since}`, `epoch=${encodeURIComponent(resumePoint.epoch)}`);
    }
    if (inspect) parameters.push("inspect=1");
    const url = new URL(serverUrl);
    const existing = url.search.slice(1);
    url.search = [existing, ...parameters].filter((part) => part !== "").join("&");
    return url.toString();
  }
  function hideSession(url) {
    return url.replace(/([?&]session=)[^&#]*/, "$1\u2026");
  }
  class ChatConnection {
    constructor(options) {
      __publicField(this, "options");
      __publicField(this, "timers");
      __publicField(this, "timing");
      __publicField(this, "outbox");
      __publicField(this, "transcript");
      __publicField(this, "backoff");
      __publicField(this, "session");
      __publicField(this, "phase", { name: "stopped" });
      /** The name the server gave us, kept in storage so the next connection asks for it again. */
      __publicField(this, "confirmedName");
      /** A name the user chose that the server has not confirmed yet (asked for on the next welcome if offline). */
      __publicField(this, "requestedName", null);
      /** Our public id from the last welcome (kept in storage): a message is ours when its sid is this. */
      __publicField(this, "ownSid");
      /** Who is in the room, as the current socket was told; empty while there is none. */
      __publicField(this, "roster", new MemberList());
      /** Asking for messages older than the oldest shown, on the current socket. */
      __publicField(this, "pager", new HistoryPager());
      /** Whether the frame inspector is open: the server is asked for traces on every connection. */
      __publicField(this, "inspectOn");
      /** The frame lab's request on the current socket, and its answer (part three). */
      __publicField(this, "lab", new FrameLab());
      this.options = options;
      this.timers = options.timers;
      this.timing = { ...DEFAULT_TIMING, ...options.timing };
      this.outbox = new Outbox(options.storage);
      this.transcript = new Transcript(options.storage);
      this.backoff = new Backoff(options.random ?? Math.random, this.timing.backoffBaseMs, this.timing.backoffCapMs);
      const createSecret = options.createSessionSecret ?? createSessionSecret;
      this.session = new TabSession(options.storage, options.tabChannel ?? null, createSecret, () => {
        this.ownSid = null;
        this.reconnectNow();
      });
      this.confirmedName = options.storage.getItem(STORAGE_KEYS.name);
      this.ownSid = options.storage.getItem(STORAGE_KEYS.you);
      this.inspectOn = readStoredJson(options.storage, STORAGE_KEYS.inspector) === true;
    }
    // --- What the page reads ---
    get state() {
      switch (this.phase.name) {
        case "stopped":
        case "offline":
          return "offline";
        case "opening":
          return this.phase.retry ? "reconnecting" : "connecting";
        case "open":
          return "connected";
        case "waiting":
          return "reconnecting";
      }
    }
    /** Failed attempts since the last stable connection: "attempt n" on screen. */
    get attempt() {
      return this.backoff.attempts;
    }
    /** When the next attempt is due (Timers.now() clock), while waiting for it; otherwise null. */
    get nextAttemptAt() {
      return this.phase.name === "waiting" ? this.phase.retryAt : null;
    }
    /** The name the server gave us in the last welcome. */
    get name() {
      return this.confirmedName;
    }
    /** The name the user chose and the server has not confirmed yet; null when there is none. */
    get wantedName() {
      return this.requestedName;
    }
    /** Our public id (the welcome's `you`); null before the first welcome. */
    get you() {
      return this.ownSid;
    }
    /** Who is in the room, as the current connection was told; empty without one. See MemberList. */
    get members() {
      return this.roster.members;
    }
    /** Everyone in the room (away or not), and those with a connection: the server's counts. */
    get memberCount() {
      return this.roster.memberCount;
    }
    get online() {
      return this.roster.online;
    }
    /** Whether the counts are the server's now (connected and welcomed); see MemberList.known. */
    get onlineKnown() {
      return this.roster.known;
    }
    /** The online count now, or the last one before the connection was lost; null before any welcome. */
    get lastKnownOnline() {
      return this.roster.lastKnownOnline;
    }
    /** Whether `members` is the whole room; see MemberListStatus. */
    get memberListStatus() {
      return this.roster.status;
    }
    /** What asking for more members would do: add to the list (its length) or load it again (0); null: nothing to ask. */
    get nextMembersOffset() {
      return this.roster.nextOffset;
    }
    get membersLoading() {
      return this.roster.loading;
    }
    /** What can be done about messages older than the oldest shown. */
    get olderMessages() {
      return this.pager.status(this.transcript.oldestShownSeq);
    }
    get entries() {
      return this.transcript.entries;
    }
    get pending() {
      return this.outbox.pending;
    }
    get lastSeq() {
      return this.transcript.lastSeq;
    }
    get epoch() {
      return this.transcript.epoch;
    }
    /** Whether the frame inspector is open (remembered in storage across reloads). */
    get inspecting() {
      return this.inspectOn;
    }
    /** The frame lab: nothing asked, waiting for the server, or its answer. */
    get frameLab() {
      return this.lab.state;
    }
    /** Ours: sent by our session, under whatever name. Nothing else makes a message ours. */
    isMine(message) {
      return this.ownSid !== null && message.sid === this.ownSid;
    }
    // --- What the page does ---
    start() {
      if (this.phase.name !== "stopped" || this.options.serverUrl === null) return;
      if (this.isOnline()) this.connect();
      else this.enter({ name: "offline" });
    }
    stop() {
      this.enter({ name: "stopped" });
    }
    /**
     * Queues the text and sends it at once if connected. Queued messages are
     * stored, shown as pending, and sent after the next welcome.
     */
    send(rawText) {
      const text = rawText.trim();
      if (text === "") return "empty";
      if (characterCount(text) > MAX_TEXT_LENGTH) return "too_long";
      const message = this.outbox.add(text, (this.options.createId ?? createMessageId)(), this.timers.now());
      const connected = this.phase.name === "open";
      if (connected) this.sendSay(message);
      this.notify();
      return connected ? "sent" : "queued";
    }
    /**
     * Opens or closes the frame inspector. While it is open the server reports
     * every frame of this connection as a `trace` message; each new socket asks
     * for that in its URL (inspect=1, which also gets the handshake) and again
     * after the welcome. An open socket is told at once.
     */
    setInspecting(on) {
      if (on === this.inspectOn) return;
      this.inspectOn = on;
      writeStoredJson(this.options.storage, STORAGE_KEYS.inspector, on);
      const connected = this.phase.name === "open";
      this.sendFrame({ type: "inspect", on });
      this.observe({ kind: "inspect", on, connected });
    }
    /**
     * Asks for the page of messages before the oldest one shown, if the server
     * keeps older ones and no request is out. Only on the user's action (a
     * scroll to the top, a button): requests count against the rate limit.
     */
    loadOlder() {
      if (this.phase.name !== "open") return;
      const before = this.pager.ask(this.transcript.oldestShownSeq);
      if (before === null) return;
      this.sendFrame({ type: "history", before });
      this.notify();
    }
    /**
     * Asks the server to decode `hex` as a client's or a server's frames (the
     * frame lab). Only over an open connection and with no other request out:
     * the answer names no request, so only one may be waiting. Returns whether
     * it was sent.
     */
    decode(hex, from) {
      if (this.phase.name !== "open") return false;
      const request = this.lab.ask(hex, from);
      if (request === null) return false;
      this.sendFrame({ type: "decode", hex: request.hex, from: request.from });
      this.notify();
      return true;
    }
    /** Asks for the next page of the member list, or the list again if it may show leavers; on the user's action only. */
    loadMoreMembers() {
      if (this.phase.name !== "open") return;
      const offset = this.roster.ask();
      if (offset === null) return;
      this.sendFrame({ type: "members", offset });
      this.notify();
    }
    /**
     * Asks for a new name over the open connection ({"type":"rename"}); the
     * server answers everyone with `renamed`, or us with name_taken or
     * bad_name. Offline, the name is asked for after the next welcome.
     */
    rename(rawName) {
      const name = rawName.trim();
      if (name === "" || name === (this.requestedName ?? this.confirmedName)) return;
      this.requestedName = name === this.confirmedName ? null : name;
      if (this.requestedName !== null) this.sendFrame({ type: "rename", name });
      this.notify();
    }
    /**
     * The browser says the network is back or the page is visible again. If we
     * are waiting to retry, retry now. If we believe we are connected, check:
     * a network change is exactly when connections die without a word.
     */
    wake() {
      const { phase } = this;
      if (phase.name === "offline" || phase.name === "waiting") this.connect();
      else if (phase.name === "open") phase.heartbeat.probe();
    }
    /**
     * The browser says the network is gone. Waiting to retry is pointless until
     * it comes back; a connection that looks open is probably dead, so check it.
     */
    noteOffline() {
      const { phase } = this;
      if (phase.name === "offline" || phase.name === "waiting") this.enter({ name: "offline" });
      else if (phase.name === "open") phase.heartbeat.probe();
    }
    // --- The state machine ---
    /** Creates a socket: the only place one is made. */
    connect() {
      const { serverUrl } = this.options;
      if (serverUrl === null) return;
      const inspect = this.inspectOn;
      const name = this.requestedName ?? this.confirmedName;
      const resumePoint = this.transcript.resumePoint();
      const url = buildSocketUrl(serverUrl, this.session.secret, name, resumePoint, inspect);
      this.observe({ kind: "opening", url: hideSession(url) });
      let socket;
      try {
        socket = this.options.createSocket(url);
      } catch {
        this.retryLater();
        return;
      }
      this.observe({ kind: "socket", tracedFromStart: inspect });
      const connectTimer = this.timers.setTimeout(() => {
        this.observe({ kind: "not-welcomed", timeoutMs: this.timing.connectTimeoutMs });
        this.retryLater();
      }, this.timing.connectTimeoutMs);
      this.enter({ name: "opening", socket, connectTimer, retry: this.backoff.attempts > 0 });
      socket.addEventListener("message", (event) => {
        if (this.isCurrent(socket)) this.handleFrame(event.data);
      });
      socket.addEventListener("close", (event) => {
        const current = this.isCurrent(socket);
        this.observe({
          kind: "closed",
          code: typeof event.code === "number" ? event.code : null,
          reason: typeof event.reason === "string" ? event.reason : "",
          wasClean: typeof event.wasClean === "boolean" ? event.wasClean : null,
          current
        });
        if (current) this.retryLater();
      });
      socket.addEventListener("error", () => {
        if (!this.isCurrent(socket)) return;
        this.observe({ kind: "socket-error" });
        this.retryLater();
      });
    }
    /** The welcome: the server knows who we are and has sent what we missed after it. */
    opened(socket) {
      const heartbeat = new Heartbeat({
        intervalMs: this.timing.heartbeatIntervalMs,
        timeoutMs: this.timing.heartbeatTimeoutMs,
        timers: this.timers,
        sendPing: (time) => this.sendFrame({ type: "ping", t: time }),
        onSilence: () => {
          this.observe({ kind: "silent", timeoutMs: this.timing.heartbeatTimeoutMs });
          this.retryLater();
        }
      });
      heartbeat.start();
      const stableTimer = this.timers.setTimeout(() => this.backoff.reset(), this.timing.stableAfterMs);
      this.enter({ name: "open", socket, heartbeat, stableTimer, resendTimer: null });
    }
    /** The current socket is lost: wait for the backoff's next delay, or for the network. */
    retryLater() {
      if (!this.isOnline()) {
        this.enter({ name: "offline" });
        return;
      }
      const delayMs = this.backoff.next();
      const retryTimer = this.timers.setTimeout(() => this.connect(), delayMs);
      this.enter({ name: "waiting", retryTimer, retryAt: this.timers.now() + delayMs });
      this.observe({ kind: "retry", attempt: this.backoff.attempts, delayMs });
    }
    /** A deliberate reconnection, not a failure: no waiting, no backoff. Entering opening closes the old socket. */
    reconnectNow() {
      if (this.phase.name === "stopped") return;
      this.backoff.reset();
      this.connect();
    }
    /** The one place the phase changes; the observer hears of the state the page shows changing. */
    enter(next) {
      const from = this.state;
      this.release("socket" in next ? next.socket : null);
      this.phase = next;
      const to = this.state;
      if (to !== from) this.observe({ kind: "state", from, to });
      this.notify();
    }
    /**
     * Ends what the current phase holds: its timers are cancelled and its socket
     * closed, unless it is `keep` (the socket an opening phase hands to the open
     * one).
     */
    release(keep) {
      const { phase } = this;
      if (phase.name === "opening") this.timers.clearTimeout(phase.connectTimer);
      if (phase.name === "waiting") this.timers.clearTimeout(phase.retryTimer);
      if (phase.name === "open") {
        phase.heartbeat.stop();
        this.timers.clearTimeout(phase.stableTimer);
        if (phase.resendTimer !== null) this.timers.clearTimeout(phase.resendTimer);
      }
      if ((phase.name === "opening" || phase.name === "open") && phase.socket !== keep) {
        this.roster.clear();
        this.pager.close();
        this.lab.close();
        try {
          phase.socket.close();
        } catch {
        }
      }
    }
    isCurrent(socket) {
      const { phase } = this;
      return (phase.name === "opening" || phase.name === "open") && phase.socket === socket;
    }
    // --- Frames from the server ---
    handleFrame(data) {
      if (this.phase.name === "open") this.phase.heartbeat.noteActivity();
      const frame = parseServerFrame(data);
      if (frame?.type === "trace") {
        this.observe({ kind: "trace", trace: frame.trace });
        return;
      }
      if (typeof data === "string") this.observe({ kind: "received", text: data });
      if (frame === null) return;
      switch (frame.type) {
        case "welcome":
          this.handleWelcome(frame);
          break;
        case "message":
          this.outbox.acknowledge(frame.message.id);
          this.transcript.addMessage(frame.message);
          break;
        case "pong": {
          const roundTripMs = frame.t === null ? -1 : this.timers.now() - frame.t;
          if (roundTripMs >= 0) this.observe({ kind: "rtt", roundTripMs });
          break;
        }
        case "joined":
        case "left":
        case "away":
        case "back":
          this.handlePresence(frame);
          break;
        case "presence":
          this.handlePresenceSummary(frame);
          break;
        case "members":
          this.roster.page(frame);
          break;
        case "history":
          if (this.phase.name !== "open") break;
          this.transcript.addOlder(frame.messages);
          this.pager.answered(frame);
          break;
        case "renamed":
          this.handleRename(frame);
          break;
        case "error":
          this.handleError(frame);
          break;
        case "decoded":
          this.lab.answered(frame);
          break;
      }
      this.notify();
    }
    handleWelcome(welcome) {
      if (this.phase.name !== "opening" && this.phase.name !== "open") return;
      this.rememberName(welcome.name);
      this.ownSid = welcome.you;
      this.store(STORAGE_KEYS.you, welcome.you);
      this.roster.welcome(welcome);
      this.transcript.welcome(welcome.epoch, welcome.resumed, this.timers.now());
      this.pager.welcome(welcome.oldestSeq);
      this.opened(this.phase.socket);
      if (this.inspectOn) this.sendFrame({ type: "inspect", on: true });
      this.sendPending();
      if (this.requestedName === welcome.name) this.requestedName = null;
      if (this.requestedName !== null) this.sendFrame({ type: "rename", name: this.requestedName });
    }
    /**
     * Presence changes the member list. Only joined and left are news worth a
     * line: away and back are a reload or a blip, shown in the list alone.
     */
    handlePresence(presence) {
      const { type, name, sid } = presence;
      this.roster.presence(presence);
      if (sid === this.ownSid) return;
      if (type === "joined" || type === "left") this.transcript.addNotice(type, name, this.timers.now());
    }
    /** A large room's second of comings and goings: the list and counts, and one line of counts (we are not news). */
    handlePresenceSummary(summary) {
      this.roster.summary(summary);
      const isMe = (member) => member.sid === this.ownSid;
      const joined = summary.joinedCount - (summary.joined.some(isMe) ? 1 : 0);
      const left = summary.leftCount - (summary.left.some(isMe) ? 1 : 0);
      this.transcript.addPresence(Math.max(0, joined), Math.max(0, left), this.timers.now());
    }
    handleRename({ sid, from, to }) {
      this.roster.rename(sid, to);
      if (sid === this.ownSid) {
        this.rememberName(to);
        if (this.requestedName === to) this.requestedName = null;
      }
      this.transcript.addRename(from, to, this.timers.now());
    }
    handleError(error) {
      const { phase } = this;
      if (isFrameLabError(error)) {
        this.lab.refused(error.message);
        return;
      }
      if (error.code === "rate_limited") this.lab.refused(error.message);
      if (error.id === null && error.code !== "bad_name" && error.code !== "name_taken") {
        this.roster.refused();
        this.pager.refused();
      }
      if (error.code === "bad_name" || error.code === "name_taken") {
        this.requestedName = null;
      } else if (RESEND_LATER_CODES.has(error.code)) {
        if (phase.name === "open" && phase.resendTimer === null) {
          phase.resendTimer = this.timers.setTimeout(() => {
            phase.resendTimer = null;
            this.sendPending();
          }, this.timing.rateLimitRetryMs);
        }
      } else if (error.id !== null) {
        this.outbox.discard(error.id);
      }
      this.options.onServerError?.({ code: error.code, message: error.message });
    }
    // --- Frames to the server ---
    sendPending() {
      for (const message of this.outbox.pending) this.sendSay(message);
    }
    sendSay(message) {
      this.sendFrame({ type: "say", id: message.id, text: message.text });
    }
    /** Sends over the open connection; before the welcome, and without one, nothing is sent. */
    sendFrame(frame) {
      if (this.phase.name !== "open") return;
      const text = JSON.stringify(frame);
      try {
        this.phase.socket.send(text);
      } catch {
        return;
      }
      this.observe({ kind: "sent", text });
    }
    // --- Small helpers ---
    rememberName(name) {
      this.confirmedName = name;
      this.store(STORAGE_KEYS.name, name);
    }
    store(key, value) {
      try {
        this.options.storage.setItem(key, value);
      } catch {
      }
    }
    isOnline() {
      return this.options.isOnline?.() ?? true;
    }
    observe(event) {
      this.options.observer?.(event);
    }
    notify() {
      this.options.onChange?.();
    }
  }
  const DEFAULT_LOCAL_SERVER = "ws://localhost:5500/";
  function resolveServer(page) {
    const requested = new URLSearchParams(page.search).get("server");
    if (requested !== null) {
      return isWebSocketUrl(requested) ? { kind: "chosen", url: requested } : { kind: "invalid", given: requested };
    }
    if (page.protocol === "https:") return { kind: "page", url: `wss://${page.host}/` };
    if (page.protocol === "http:") return { kind: "page", url: `ws://${page.host}/` };
    return { kind: "disk", url: DEFAULT_LOCAL_SERVER };
  }
  function isWebSocketUrl(text) {
    try {
      const { protocol } = new URL(text);
      return protocol === "ws:" || protocol === "wss:";
    } catch {
      return false;
    }
  }
  function serverHelp(address, state) {
    if (address.kind === "invalid") return { kind: "invalid", given: address.given };
    if (address.kind === "page" || state !== "reconnecting") return { kind: "none" };
    let local = false;
    try {
      const { hostname } = new URL(address.url);
      local = hostname === "localhost" || hostname === "127.0.0.1" || hostname === "[::1]";
    } catch {
    }
    return { kind: "no-answer", url: address.url, local };
  }
  function readTimingFromQuery(search) {
    const query = new URLSearchParams(search);
    const timing = {};
    const heartbeat = readPositiveInteger(query.get("heartbeat"));
    const heartbeatTimeout = readPositiveInteger(query.get("heartbeatTimeout"));
    if (heartbeat !== null) timing.heartbeatIntervalMs = heartbeat;
    if (heartbeatTimeout !== null) timing.heartbeatTimeoutMs = heartbeatTimeout;
    return timing;
  }
  function readPositiveInteger(text) {
    if (text === null || !/^\d+$/.test(text)) return null;
    const value = Number(text);
    return value > 0 && Number.isSafeInteger(value) ? value : null;
  }
  const COUNTER_FROM = 1800;
  function composerCount(text) {
    const count = characterCount(text.trim());
    return count < COUNTER_FROM ? null : { count, over: count > MAX_TEXT_LENGTH };
  }
  class MessageTimeFormat {
    constructor(locale, timeZone) {
      __publicField(this, "day");
      __publicField(this, "year");
      __publicField(this, "timeOnly");
      __publicField(this, "withDate");
      __publicField(this, "withYear");
      __publicField(this, "full");
      const time = { hour: "2-digit", minute: "2-digit", timeZone };
      this.day = new Intl.DateTimeFormat("en-CA", { year: "numeric", month: "2-digit", day: "2-digit", timeZone });
      this.year = new Intl.DateTimeFormat("en-CA", { year: "numeric", timeZone });
      this.timeOnly = new Intl.DateTimeFormat(locale, time);
      this.withDate = new Intl.DateTimeFormat(locale, { ...time, month: "short", day: "numeric" });
      this.withYear = new Intl.DateTimeFormat(locale, { ...time, year: "numeric", month: "short", day: "numeric" });
      this.full = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "medium", timeZone });
    }
    /** The short form, next to the message; `now` decides what "today" is. */
    format(time, now) {
      if (this.day.format(time) === this.day.format(now)) return this.timeOnly.format(time);
      return (this.year.format(time) === this.year.format(now) ? this.withDate : this.withYear).format(time);
    }
    /** Date and time in full, for the tooltip. */
    long(time) {
      return this.full.format(time);
    }
  }
  function pickLanguage(languages) {
    for (const language of languages) {
      const lower = language.toLowerCase();
      if (lower.startsWith("zh")) return "zh";
      if (lower.startsWith("en")) return "en";
    }
    return "en";
  }
  const TEXT = {
    zh: {
      htmlLang: "zh-CN",
      heading: "\u804A\u5929\u5BA4",
      connecting: "\u6B63\u5728\u8FDE\u63A5\u2026",
      connected: "\u5DF2\u8FDE\u63A5",
      reconnecting: (attempt) => `\u6B63\u5728\u91CD\u8FDE\uFF08\u7B2C ${attempt} \u6B21\u5C1D\u8BD5\uFF09`,
      nextTryIn: (seconds2) => `\uFF0C${seconds2} \u79D2\u540E\u91CD\u8BD5`,
      offline: "\u79BB\u7EBF",
      notConnected: "\u672A\u8FDE\u63A5",
      retryNow: "\u7ACB\u5373\u91CD\u8BD5",
      noServer: (url, local) => [
        `${url} \u6CA1\u6709\u804A\u5929\u670D\u52A1\u5668\u5E94\u7B54\u3002`,
        ...local ? [
          "\u5728\u804A\u5929\u5BA4\u7684\u6587\u4EF6\u5939\u91CC\u8FD0\u884C ",
          { code: "npm start" },
          " \u542F\u52A8\u670D\u52A1\u5668\uFF08Node 24 \u4E5F\u53EF\u4EE5\u76F4\u63A5\u8FD0\u884C ",
          { code: "node server.ts" },
          "\uFF09\u3002"
        ] : ["\u5730\u5740\u5BF9\u5417\uFF1F\u670D\u52A1\u5668\u542F\u52A8\u4E86\u5417\uFF1F"]
      ],
      badServer: (given) => [
        "\u5730\u5740\u680F\u91CC\u7684 ",
        { code: `?server=${given}` },
        " \u4E0D\u662F WebSocket \u5730\u5740\uFF08\u5E94\u4EE5 ws:// \u6216 wss:// \u5F00\u5934\uFF09\uFF0C\u6240\u4EE5\u6CA1\u6709\u8FDE\u63A5\u4EFB\u4F55\u670D\u52A1\u5668\u3002\u6539\u6B63\u5B83\uFF0C\u6216\u8005\u5220\u6389\u5B83\u3002"
      ],
      online: (count) => `\u5728\u7EBF\uFF08${count ?? "\u2014"}\uFF09`,
      lastOnline: (count) => `\u65AD\u7EBF\u524D ${count} \u4EBA\u5728\u7EBF`,
      showingMembers: (shown, total) => `\u663E\u793A ${shown} / ${total} \u4EBA`,
      staleMembers: "\u540D\u5355\u91CC\u53EF\u80FD\u8FD8\u6709\u5DF2\u79BB\u5F00\u7684\u4EBA",
      moreMembers: "\u66F4\u591A\u2026",
      reloadMembers: "\u91CD\u65B0\u52A0\u8F7D\u540D\u5355",
      loadingMembers: "\u6B63\u5728\u52A0\u8F7D\u2026",
      olderMessages: "\u52A0\u8F7D\u66F4\u65E9\u7684\u6D88\u606F",
      loadingOlder: "\u6B63\u5728\u52A0\u8F7D\u66F4\u65E9\u7684\u6D88\u606F\u2026",
      me: "\u6211",
      sending: "\u53D1\u9001\u4E2D\u2026",
      waitingToSend: "\u7B49\u5F85\u53D1\u9001",
      joined: (name) => `${name} \u52A0\u5165\u4E86\u804A\u5929\u5BA4`,
      left: (name) => `${name} \u79BB\u5F00\u4E86\u804A\u5929\u5BA4`,
      renamed: (from, to) => `${from} \u6539\u540D\u4E3A ${to}`,
      presence: (joined, left) => [joined > 0 ? `${joined} \u4EBA\u52A0\u5165` : "", left > 0 ? `${left} \u4EBA\u79BB\u5F00` : ""].filter((part) => part !== "").join("\uFF0C"),
      away: "\u6682\u65F6\u79BB\u5F00",
      gap: "\u804A\u5929\u8BB0\u5F55\u5DF2\u91CD\u7F6E\uFF0C\u53EF\u80FD\u6709\u6D88\u606F\u7F3A\u5931",
      nameLabel: "\u540D\u5B57",
      inputLabel: "\u6D88\u606F",
      inputPlaceholder: "\u8F93\u5165\u6D88\u606F\uFF0CEnter \u53D1\u9001\uFF0CShift+Enter \u6362\u884C",
      counter: (count, max) => `${count.toLocaleString("zh-CN")} / ${max.toLocaleString("zh-CN")}`,
      newBelow: (count) => `${count} \u6761\u65B0\u6D88\u606F \u2193`,
      send: "\u53D1\u9001",
      messagesLabel: "\u804A\u5929\u6D88\u606F",
      tooLong: `\u6D88\u606F\u592A\u957F\u4E86\uFF08\u6700\u591A ${MAX_TEXT_LENGTH} \u4E2A\u5B57\u7B26\uFF09`,
      errors: {
        name_taken: "\u8FD9\u4E2A\u540D\u5B57\u5DF2\u7ECF\u6709\u4EBA\u5728\u7528\u4E86",
        bad_name: "\u540D\u5B57\u8981\u6709 1\u201332 \u4E2A\u5B57\u7B26\uFF0C\u4E0D\u80FD\u6709\u63A7\u5236\u5B57\u7B26",
        rate_limited: "\u53D1\u5F97\u592A\u5FEB\u4E86\uFF0C\u7A0D\u540E\u4F1A\u81EA\u52A8\u91CD\u53D1",
        empty_text: "\u4E0D\u80FD\u53D1\u9001\u7A7A\u6D88\u606F",
        text_too_long: `\u6D88\u606F\u592A\u957F\u4E86\uFF08\u6700\u591A ${MAX_TEXT_LENGTH} \u4E2A\u5B57\u7B26\uFF09`
      }
    },
    en: {
      htmlLang: "en",
      heading: "Chat room",
      connecting: "Connecting\u2026",
      connected: "Connected",
      reconnecting: (attempt) => `Reconnecting (attempt ${attempt})`,
      nextTryIn: (seconds2) => `, next try in ${seconds2} s`,
      offline: "Offline",
      notConnected: "Not connected",
      retryNow: "Retry now",
      noServer: (url, local) => [
        `No chat server answers at ${url}. `,
        ...local ? [
          "Start one in the chat room's folder: ",
          { code: "npm start" },
          " (or ",
          { code: "node server.ts" },
          " on Node 24)."
        ] : ["Is the address right, and is the server running?"]
      ],
      badServer: (given) => [
        { code: `?server=${given}` },
        " in the address bar is not a WebSocket address (ws:// or wss://), so nothing was connected. Correct it, or remove it."
      ],
      online: (count) => `Online (${count ?? "\u2014"})`,
      lastOnline: (count) => `${count} online when last connected`,
      showingMembers: (shown, total) => `Showing ${shown} of ${total}`,
      staleMembers: "Some who left may still be listed",
      moreMembers: "More\u2026",
      reloadMembers: "Reload the list",
      loadingMembers: "Loading\u2026",
      olderMessages: "Load older messages",
      loadingOlder: "Loading older messages\u2026",
      me: "me",
      sending: "sending\u2026",
      waitingToSend: "waiting to send",
      joined: (name) => `${name} joined`,
      left: (name) => `${name} left`,
      renamed: (from, to) => `${from} is now ${to}`,
      presence: (joined, left) => [joined > 0 ? `${joined} joined` : "", left > 0 ? `${left} left` : ""].filter((part) => part !== "").join(", "),
      away: "away",
      gap: "History was reset; some messages may be missing",
      nameLabel: "Name",
      inputLabel: "Message",
      inputPlaceholder: "Type a message: Enter sends, Shift+Enter starts a new line",
      counter: (count, max) => `${count.toLocaleString("en")} / ${max.toLocaleString("en")}`,
      newBelow: (count) => count === 1 ? "1 new message \u2193" : `${count} new messages \u2193`,
      send: "Send",
      messagesLabel: "Chat messages",
      tooLong: `That message is too long (at most ${MAX_TEXT_LENGTH} characters)`,
      errors: {
        name_taken: "Someone else has that name",
        bad_name: "A name has 1-32 characters and no control characters",
        rate_limited: "Too fast; your messages will be sent again shortly",
        empty_text: "Empty messages cannot be sent",
        text_too_long: `That message is too long (at most ${MAX_TEXT_LENGTH} characters)`
      }
    }
  };
  function watchBrowserSignals(connection, windowTarget, documentTarget) {
    windowTarget.addEventListener("online", () => connection.wake());
    windowTarget.addEventListener("offline", () => connection.noteOffline());
    documentTarget.addEventListener("visibilitychange", () => {
      if (documentTarget.visibilityState === "visible") connection.wake();
    });
  }
  function findElement(id, kind) {
    const found = document.getElementById(id);
    if (!(found instanceof kind)) throw new Error(`client.html has no <${kind.name}> with id "${id}"`);
    return found;
  }
  function findChatElements() {
    return {
      heading: findElement("heading", HTMLElement),
      status: findElement("status", HTMLElement),
      statusText: findElement("status-text", HTMLElement),
      statusName: findElement("status-name", HTMLElement),
      statusCountdown: findElement("status-countdown", HTMLElement),
      retry: findElement("retry", HTMLButtonElement),
      serverHelp: findElement("server-help", HTMLElement),
      usersHeading: findElement("users-heading", HTMLElement),
      users: findElement("users", HTMLUListElement),
      usersNote: findElement("users-note", HTMLElement),
      usersMore: findElement("users-more", HTMLButtonElement),
      older: findElement("older", HTMLButtonElement),
      messages: findElement("messages", HTMLOListElement),
      newBelow: findElement("new-below", HTMLButtonElement),
      alert: findElement("alert", HTMLElement),
      nameForm: findElement("name-form", HTMLFormElement),
      nameLabel: findElement("name-label", HTMLLabelElement),
      name: findElement("name", HTMLInputElement),
      composer: findElement("composer", HTMLFormElement),
      inputLabel: findElement("input-label", HTMLLabelElement),
      input: findElement("input", HTMLTextAreaElement),
      counter: findElement("counter", HTMLElement),
      send: findElement("send", HTMLButtonElement)
    };
  }
  function setText(element, text) {
    if (element.textContent !== text) element.textContent = text;
  }
  function createElement(tag, className) {
    const element = document.createElement(tag);
    element.className = className;
    return element;
  }
  class ChatView {
    constructor(elements, text, address) {
      __publicField(this, "elements");
      __publicField(this, "text");
      __publicField(this, "address");
      /** In the browser's own locale and time zone, as the rest of its dates are. */
      __publicField(this, "timeFormat", new MessageTimeFormat());
      /** Lines currently in the list, by key: a message's id, or the transcript key of a notice. */
      __publicField(this, "messageRows", /* @__PURE__ */ new Map());
      __publicField(this, "noticeRows", /* @__PURE__ */ new Map());
      __publicField(this, "renderQueued", false);
      /** Scroll to the newest line on the next render even if the reader had scrolled up. */
      __publicField(this, "scrollToNewest", true);
      __publicField(this, "alertTimer", null);
      /** The users list as last drawn, to skip redrawing it when nothing changed. */
      __publicField(this, "shownUsers", "");
      /** The help under the status as last drawn, for the same reason. */
      __publicField(this, "shownHelp", "");
      /** The transcript key of the last line the reader saw at the bottom of the list; see countNewBelow. */
      __publicField(this, "lastReadKey", null);
      this.elements = elements;
      this.text = text;
      this.address = address;
    }
    /** Fills in the words that client.html holds in Chinese, in the page's language. */
    applyLanguage() {
      const { elements, text } = this;
      document.documentElement.lang = text.htmlLang;
      setText(elements.heading, text.heading);
      setText(elements.retry, text.retryNow);
      setText(elements.nameLabel, text.nameLabel);
      setText(elements.inputLabel, text.inputLabel);
      setText(elements.send, text.send);
      setText(elements.older, text.olderMessages);
      elements.input.placeholder = text.inputPlaceholder;
      elements.name.placeholder = text.nameLabel;
      elements.messages.setAttribute("aria-label", text.messagesLabel);
    }
    /**
     * Redraws once after the current burst of changes: a reconnection replays
     * many messages, each one a change, and one redraw for all of them is enough.
     */
    scheduleRender(connection) {
      if (this.renderQueued) return;
      this.renderQueued = true;
      queueMicrotask(() => {
        this.renderQueued = false;
        this.render(connection);
      });
    }
    render(connection) {
      this.renderStatus(connection);
      this.renderUsers(connection);
      this.renderName(connection);
      this.renderOlder(connection);
      this.renderMessages(connection);
      this.renderNewBelow(connection);
    }
    followNewest() {
      this.scrollToNewest = true;
    }
    renderStatus(connection) {
      const { status, statusText, statusName, statusCountdown, retry } = this.elements;
      const { state, attempt, nextAttemptAt } = connection;
      const nowhere = this.address.kind === "invalid";
      status.dataset.state = state;
      status.dataset.attempt = String(attempt);
      const labels = {
        connecting: this.text.connecting,
        connected: this.text.connected,
        reconnecting: this.text.reconnecting(attempt),
        offline: nowhere ? this.text.notConnected : this.text.offline
      };
      setText(statusText, labels[state]);
      setText(statusName, state === "connected" && connection.name !== null ? ` \xB7 ${connection.name}` : "");
      const waiting = state === "reconnecting" && nextAttemptAt !== null;
      const seconds2 = waiting ? Math.max(0, Math.ceil((nextAttemptAt - Date.now()) / 1e3)) : 0;
      setText(statusCountdown, waiting ? this.text.nextTryIn(seconds2) : "");
      retry.hidden = nowhere || !(waiting || state === "offline");
      this.renderServerHelp(serverHelp(this.address, state));
    }
    /** Where the page tries to connect and how to start a server there, or why it connects nowhere. */
    renderServerHelp(help) {
      const { serverHelp: element } = this.elements;
      const signature = JSON.stringify(help);
      if (signature === this.shownHelp) return;
      this.shownHelp = signature;
      element.dataset.kind = help.kind;
      element.hidden = help.kind === "none";
      let parts = [];
      if (help.kind === "no-answer") parts = this.text.noServer(help.url, help.local);
      if (help.kind === "invalid") parts = this.text.badServer(help.given);
      element.replaceChildren(
        ...parts.map((part) => {
          if (typeof part === "string") return part;
          const code = document.createElement("code");
          code.textContent = part.code;
          return code;
        })
      );
    }
    /** The count under the composer near the limit; see composerCount. */
    renderCounter() {
      const { counter, input } = this.elements;
      const shown = composerCount(input.value);
      counter.hidden = shown === null;
      counter.dataset.over = String(shown?.over ?? false);
      setText(counter, shown === null ? "" : this.text.counter(shown.count, MAX_TEXT_LENGTH));
    }
    /** Whether the message list is scrolled (nearly) to its end. */
    atBottom() {
      const list = this.elements.messages;
      return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    }
    /**
     * "3 new messages ↓" while messages came in below a reader scrolled up;
     * gone once they are at the bottom, which also marks everything read.
     */
    renderNewBelow(connection) {
      const { newBelow } = this.elements;
      const { entries } = connection;
      if (this.atBottom()) this.lastReadKey = entries[entries.length - 1]?.key ?? null;
      const count = countNewBelow(entries, this.lastReadKey);
      newBelow.hidden = count === 0;
      newBelow.dataset.count = String(count);
      setText(newBelow, count === 0 ? "" : this.text.newBelow(count));
    }
    /** The new-messages button: to the newest line, which marks them read. */
    showNewest(connection) {
      const list = this.elements.messages;
      list.scrollTop = list.scrollHeight;
      this.renderNewBelow(connection);
    }
    showAlert(message, code = null) {
      const { alert } = this.elements;
      setText(alert, message);
      alert.hidden = false;
      if (code === null) delete alert.dataset.code;
      else alert.dataset.code = code;
      if (this.alertTimer !== null) window.clearTimeout(this.alertTimer);
      this.alertTimer = window.setTimeout(() => this.hideAlert(), 8e3);
    }
    showServerError(error) {
      const { errors } = this.text;
      const known = Object.prototype.hasOwnProperty.call(errors, error.code);
      const words = known ? errors[error.code] : void 0;
      this.showAlert(words ?? (error.message || error.code), error.code);
    }
    hideAlert() {
      const { alert } = this.elements;
      alert.hidden = true;
      alert.textContent = "";
      delete alert.dataset.code;
    }
    renderUsers(connection) {
      const { users, usersHeading, usersNote, usersMore } = this.elements;
      const { members, you, memberListStatus: status, nextMembersOffset, onlineKnown, lastKnownOnline } = connection;
      setText(usersHeading, this.text.online(onlineKnown ? connection.online : null));
      const note = [
        !onlineKnown && lastKnownOnline !== null ? this.text.lastOnline(lastKnownOnline) : "",
        status === "complete" ? "" : this.text.showingMembers(members.length, connection.memberCount),
        status === "stale" ? this.text.staleMembers : ""
      ].filter((part) => part !== "");
      setText(usersNote, note.join(" \xB7 "));
      usersNote.hidden = note.length === 0;
      users.dataset.status = status;
      usersMore.hidden = nextMembersOffset === null || connection.state !== "connected";
      usersMore.disabled = connection.membersLoading;
      const moreLabel = nextMembersOffset === 0 ? this.text.reloadMembers : this.text.moreMembers;
      setText(usersMore, connection.membersLoading ? this.text.loadingMembers : moreLabel);
      const signature = JSON.stringify([you, members]);
      if (signature === this.shownUsers) return;
      this.shownUsers = signature;
      users.replaceChildren(
        ...members.map((member) => {
          const isMe = member.sid === you;
          const item = createElement("li", isMe ? "user me" : "user");
          item.classList.toggle("away", member.away);
          item.dataset.name = member.name;
          item.dataset.sid = member.sid;
          const name = createElement("span", "user-name");
          name.dir = "auto";
          name.textContent = member.name;
          item.append(name);
          if (isMe) item.append(" ", this.createMeBadge());
          if (member.away) {
            const label = createElement("span", "away-label");
            label.textContent = this.text.away;
            item.append(" ", label);
          }
          return item;
        })
      );
    }
    renderName(connection) {
      const { name } = this.elements;
      if (document.activeElement !== name) name.value = connection.name ?? "";
    }
    /** The button above the messages, for older ones; scrolling to the top does the same. */
    renderOlder(connection) {
      const { older } = this.elements;
      const status = connection.olderMessages;
      older.hidden = status !== "available" && status !== "loading";
      older.disabled = status === "loading";
      older.dataset.status = status;
      setText(older, status === "loading" ? this.text.loadingOlder : this.text.olderMessages);
    }
    renderMessages(connection) {
      const list = this.elements.messages;
      const wasAtBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      const forced = this.scrollToNewest;
      const followNewest = forced || wasAtBottom;
      this.scrollToNewest = false;
      const previousFirst = list.firstElementChild;
      const anchor = followNewest ? previousFirst : this.firstRowInView(list);
      const anchorTop = anchor?.getBoundingClientRect().top ?? 0;
      const wanted = [];
      const usedMessageKeys = /* @__PURE__ */ new Set();
      const usedNoticeKeys = /* @__PURE__ */ new Set();
      const messageKey = (id, fallback) => id !== "" && !usedMessageKeys.has(id) ? id : fallback;
      for (const entry of connection.entries) {
        if (entry.kind === "notice") {
          usedNoticeKeys.add(entry.key);
          wanted.push(this.noticeRow(entry));
          continue;
        }
        const { message } = entry;
        const key = messageKey(message.id, entry.key);
        usedMessageKeys.add(key);
        wanted.push(this.messageRow(key, { ...message, mine: connection.isMine(message), pendingMark: null }));
      }
      for (const message of connection.pending) {
        const key = messageKey(message.id, `pending-${message.id}`);
        usedMessageKeys.add(key);
        const pendingMark = connection.state === "connected" ? this.text.sending : this.text.waitingToSend;
        const from = connection.name ?? connection.wantedName ?? "";
        const line = { id: message.id, seq: null, from, text: message.text, time: null, mine: true, pendingMark };
        wanted.push(this.messageRow(key, line));
      }
      wanted.forEach((row, index) => {
        const current = list.children[index];
        if (current !== row) list.insertBefore(row, current ?? null);
      });
      while (list.children.length > wanted.length) list.lastElementChild?.remove();
      for (const key of this.messageRows.keys()) if (!usedMessageKeys.has(key)) this.messageRows.delete(key);
      for (const key of this.noticeRows.keys()) if (!usedNoticeKeys.has(key)) this.noticeRows.delete(key);
      const grewAbove = previousFirst !== null && previousFirst.isConnected && previousFirst !== list.firstElementChild;
      if (!forced && anchor !== null && anchor.isConnected && (!followNewest || grewAbove)) {
        list.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
      } else if (followNewest) {
        list.scrollTop = list.scrollHeight;
      }
    }
    firstRowInView(list) {
      const top = list.getBoundingClientRect().top;
      for (const row of list.children) if (row.getBoundingClientRect().bottom > top) return row;
      return null;
    }
    messageRow(key, line) {
      let row = this.messageRows.get(key);
      if (row === void 0) {
        row = this.createMessageRow();
        this.messageRows.set(key, row);
      }
      const { element } = row;
      element.dataset.id = line.id;
      if (line.seq === null) delete element.dataset.seq;
      else element.dataset.seq = String(line.seq);
      element.classList.toggle("mine", line.mine);
      element.classList.toggle("pending", line.pendingMark !== null);
      setText(row.from, line.from);
      row.me.hidden = !line.mine;
      row.time.hidden = line.time === null;
      if (line.time !== null) {
        const isoTime = new Date(line.time).toISOString();
        if (row.time.dateTime !== isoTime) row.time.dateTime = isoTime;
        const long = this.timeFormat.long(line.time);
        if (row.time.title !== long) row.time.title = long;
        setText(row.time, this.timeFormat.format(line.time, Date.now()));
      }
      row.mark.hidden = line.pendingMark === null;
      setText(row.mark, line.pendingMark ?? "");
      setText(row.text, line.text);
      return element;
    }
    createMessageRow() {
      const element = createElement("li", "message");
      const meta = createElement("div", "meta");
      const row = {
        element,
        from: createElement("span", "from"),
        me: this.createMeBadge(),
        time: createElement("time", "time"),
        mark: createElement("span", "mark"),
        text: createElement("p", "text")
      };
      row.from.dir = "auto";
      row.text.dir = "auto";
      meta.append(row.from, row.me, row.time, row.mark);
      element.append(meta, row.text);
      return row;
    }
    /** The mark on the user's own messages and name: 我, or "me" in English. */
    createMeBadge() {
      const badge = createElement("span", "me-badge");
      badge.textContent = this.text.me;
      return badge;
    }
    noticeRow(notice) {
      let row = this.noticeRows.get(notice.key);
      if (row === void 0) {
        const element = createElement("li", "notice");
        element.dataset.kind = notice.notice;
        row = { element, time: createElement("time", "time"), words: createElement("span", "words") };
        element.append(row.time, " ", row.words);
        this.noticeRows.set(notice.key, row);
      }
      const isoTime = new Date(notice.time).toISOString();
      if (row.time.dateTime !== isoTime) row.time.dateTime = isoTime;
      setText(row.time, this.timeFormat.format(notice.time, Date.now()));
      setText(row.words, this.noticeWords(notice));
      return row.element;
    }
    noticeWords(notice) {
      switch (notice.notice) {
        case "joined":
          return this.text.joined(notice.name);
        case "left":
          return this.text.left(notice.name);
        case "renamed":
          return this.text.renamed(notice.name, notice.to ?? "");
        case "gap":
          return this.text.gap;
        case "presence":
          return this.text.presence(notice.joined, notice.left);
      }
    }
  }
  function openSessionStorage() {
    try {
      const storage = window.sessionStorage;
      storage.getItem(STORAGE_KEYS.name);
      return storage;
    } catch {
      return createMemoryStorage();
    }
  }
  function openTabChannel() {
    if (typeof BroadcastChannel !== "function") return null;
    try {
      const channel = new BroadcastChannel("chatRoom.session");
      return {
        post: (message) => channel.postMessage(message),
        listen: (listener) => channel.addEventListener("message", (event) => listener(event.data))
      };
    } catch {
      return null;
    }
  }
  const browserTimers = {
    setTimeout: (callback, delayMs) => window.setTimeout(callback, delayMs),
    clearTimeout: (timerId) => window.clearTimeout(timerId),
    now: () => Date.now()
  };
  function createChatPage(language, observer, onChange = () => {
  }) {
    const elements = findChatElements();
    const text = TEXT[language];
    const address = resolveServer(location);
    const view = new ChatView(elements, text, address);
    view.applyLanguage();
    const connection = new ChatConnection({
      serverUrl: address.kind === "invalid" ? null : address.url,
      tabChannel: openTabChannel(),
      createSocket: (url) => new WebSocket(url),
      storage: openSessionStorage(),
      timers: browserTimers,
      timing: readTimingFromQuery(location.search),
      isOnline: () => navigator.onLine,
      onChange: () => {
        view.scheduleRender(connection);
        onChange();
      },
      onServerError: (error) => view.showServerError(error),
      observer
    });
    elements.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const outcome = connection.send(elements.input.value);
      if (outcome === "too_long") view.showAlert(text.tooLong);
      if (outcome === "sent" || outcome === "queued") {
        elements.input.value = "";
        fitInput();
        view.renderCounter();
        view.followNewest();
      }
    });
    const fitInput = () => {
      const { input } = elements;
      input.style.height = "auto";
      input.style.height = `${input.scrollHeight + input.offsetHeight - input.clientHeight}px`;
    };
    elements.input.addEventListener("input", () => {
      fitInput();
      view.renderCounter();
    });
    elements.input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.shiftKey) return;
      if (event.isComposing || event.keyCode === 229) return;
      event.preventDefault();
      elements.composer.requestSubmit();
    });
    elements.nameForm.addEventListener("submit", (event) => {
      event.preventDefault();
      connection.rename(elements.name.value);
      elements.input.focus();
    });
    elements.name.addEventListener("change", () => connection.rename(elements.name.value));
    elements.name.addEventListener("blur", () => view.scheduleRender(connection));
    elements.retry.addEventListener("click", () => connection.wake());
    elements.older.addEventListener("click", () => connection.loadOlder());
    elements.newBelow.addEventListener("click", () => view.showNewest(connection));
    elements.usersMore.addEventListener("click", () => connection.loadMoreMembers());
    let lastScrollTop = elements.messages.scrollTop;
    elements.messages.addEventListener(
      "scroll",
      () => {
        const { scrollTop } = elements.messages;
        if (scrollTop < lastScrollTop && scrollTop < 40) connection.loadOlder();
        lastScrollTop = scrollTop;
        view.renderNewBelow(connection);
      },
      { passive: true }
    );
    watchBrowserSignals(connection, window, document);
    window.setInterval(() => view.renderStatus(connection), 1e3);
    window.chatClient = Object.freeze({
      get state() {
        return connection.state;
      },
      get attempt() {
        return connection.attempt;
      },
      get name() {
        return connection.name;
      },
      get you() {
        return connection.you;
      },
      get users() {
        return connection.members.map((member) => member.name);
      },
      get members() {
        return connection.members.map((member) => ({ ...member }));
      },
      get memberCount() {
        return connection.memberCount;
      },
      get online() {
        return connection.online;
      },
      get memberListStatus() {
        return connection.memberListStatus;
      },
      get olderMessages() {
        return connection.olderMessages;
      },
      get lastSeq() {
        return connection.lastSeq;
      },
      get epoch() {
        return connection.epoch;
      },
      get outboxLength() {
        return connection.pending.length;
      },
      get inspecting() {
        return connection.inspecting;
      }
    });
    view.render(connection);
    return connection;
  }
  const INSPECTOR_LIMIT = 500;
  const HEX_BYTES_SHOWN = 16;
  const UNMATCHED_LIMIT = 100;
  const CLOSE_CODE_NAMES = {
    1e3: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake"
  };
  const SUMMARY_CHARACTERS = 80;
  function shorten(text, limit) {
    const characters = Array.from(text);
    return characters.length <= limit ? text : `${characters.slice(0, limit - 1).join("")}\u2026`;
  }
  function byteSize(bytes, unit) {
    return bytes > 0 && bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} ${unit}`;
  }
  function seconds(milliseconds) {
    return String(Math.round(milliseconds / 100) / 10);
  }
  const INSPECTOR_WORDS = {
    zh: {
      toggle: "\u5E27\u68C0\u67E5\u5668",
      heading: "\u5E27\u68C0\u67E5\u5668",
      clear: "\u6E05\u7A7A",
      framesLabel: "\u8FD9\u4E2A\u8FDE\u63A5\u7684\u5E27",
      pageToServer: "\u9875\u9762 \u2192 \u670D\u52A1\u5668",
      serverToPage: "\u670D\u52A1\u5668 \u2192 \u9875\u9762",
      handshake: "\u63E1\u624B",
      thisPage: "\u672C\u9875",
      fin: (fin) => fin ? "1 \xB7 \u8FD9\u6761\u6D88\u606F\u7684\u6700\u540E\u4E00\u5E27" : "0 \xB7 \u8FD9\u6761\u6D88\u606F\u540E\u9762\u8FD8\u6709\u5E27",
      rsv: (compressed) => compressed ? " \xB7 RSV1=1\uFF1A\u7528 permessage-deflate \u538B\u7F29\uFF08RFC 7692 \xA76\uFF09" : " \xB7 \u6CA1\u6709\u6269\u5C55\u7528\u5230\u5B83\u4EEC",
      sentPlain: (threshold) => ` \xB7 \u672A\u538B\u7F29\u53D1\u9001\uFF1A\u77ED\u4E8E ${byteSize(threshold, "\u5B57\u8282")}\uFF08--deflate-threshold\uFF09\uFF0C\u4E0D\u503C\u5F97\u538B\u7F29`,
      sentPlainWindow: (windowBits) => ` \xB7 \u672A\u538B\u7F29\u53D1\u9001\uFF1A\u5BA2\u6237\u7AEF\u8981\u6C42 server_max_window_bits=${windowBits}\uFF0C\u800C zlib \u53EA\u80FD\u7528 2^9 \u5B57\u8282\u4EE5\u4E0A\u7684\u7A97\u53E3\u538B\u7F29`,
      deflate: (direction, wireLength, length, percent) => direction === "received" ? `${wireLength} \u5B57\u8282 deflate \u6570\u636E\u89E3\u538B\u4E3A ${length} \u5B57\u8282\uFF08${percent}%\uFF09\uFF1B\u4E0A\u9762\u7684\u6587\u672C\u662F\u670D\u52A1\u5668\u89E3\u538B\u51FA\u7684\u5185\u5BB9` : `${length} \u5B57\u8282\u538B\u7F29\u4E3A ${wireLength} \u5B57\u8282\uFF08${percent}%\uFF09\uFF1B\u4E0A\u9762\u7684\u6587\u672C\u662F\u538B\u7F29\u524D\u7684\u6D88\u606F`,
      inflatedSize: (length) => `\u89E3\u538B\u540E ${length} B`,
      mask: (masked) => masked ? "1 \xB7 \u6D4F\u89C8\u5668\u53D1\u51FA\u7684\u6BCF\u4E00\u5E27\u90FD\u5FC5\u987B\u52A0\u63A9\u7801\uFF08RFC 6455 \xA75.3\uFF09" : "0 \xB7 \u670D\u52A1\u5668\u53D1\u51FA\u7684\u5E27\u4ECE\u4E0D\u52A0\u63A9\u7801",
      length: (length, bits) => bits === 7 ? `${length} \u5B57\u8282 \xB7 \u76F4\u63A5\u5199\u5728 7 \u4F4D\u957F\u5EA6\u5B57\u6BB5\u91CC\uFF080\u2013125\uFF09` : `${length} \u5B57\u8282 \xB7 7 \u4F4D\u5B57\u6BB5\u5199 ${bits === 16 ? 126 : 127}\uFF0C\u771F\u6B63\u7684\u957F\u5EA6\u5728\u540E\u9762\u7684 ${bits} \u4F4D\u91CC`,
      xor: (masked, key, unmasked) => `\u9010\u5B57\u8282\u4E0E\u5BC6\u94A5\u5F02\u6216\uFF1A${masked} \u2295 ${key} = ${unmasked}`,
      moreBytes: (count) => ` \u2026 \u53E6\u6709 ${count} \u5B57\u8282`,
      noPayload: "\u6CA1\u6709\u8D1F\u8F7D",
      compressedByPage: "\u6D4F\u89C8\u5668\u538B\u7F29\u4E86\u8FD9\u6761\u6D88\u606F\uFF08permessage-deflate\uFF09\uFF0C\u7EBF\u4E0A\u662F deflate \u6570\u636E\uFF1B\u4E0A\u9762\u7684\u6587\u672C\u662F\u672C\u9875\u4EA4\u7ED9 send() \u7684\u5185\u5BB9",
      compressedByServer: "\u670D\u52A1\u5668\u538B\u7F29\u4E86\u8FD9\u6761\u6D88\u606F\uFF08permessage-deflate\uFF09\uFF1B\u4E0A\u9762\u7684\u6587\u672C\u662F\u6D4F\u89C8\u5668\u89E3\u538B\u540E\u7684\u5185\u5BB9",
      compressedUnknown: "\u5DF2\u538B\u7F29\uFF08permessage-deflate\uFF09\uFF1A\u7EBF\u4E0A\u662F deflate \u6570\u636E\uFF0C\u4E0D\u662F\u53EF\u8BFB\u6587\u672C",
      notText: "\u4E0D\u662F\u53EF\u8BFB\u6587\u672C",
      closeReason: (reason) => ` \xB7 \u539F\u56E0 "${reason}"`,
      say: (text) => `\u804A\u5929\u6D88\u606F "${text}"`,
      message: (from, text) => `${from} \u7684\u804A\u5929\u6D88\u606F "${text}"`,
      appPing: "\u5FC3\u8DF3 ping\uFF08\u5E94\u7528\u5C42\uFF1A\u6587\u672C\u5E27\u91CC\u7684 JSON\uFF09",
      appPong: "\u5FC3\u8DF3 pong\uFF08\u5E94\u7528\u5C42\uFF1A\u6587\u672C\u5E27\u91CC\u7684 JSON\uFF09",
      welcome: (name) => `\u6B22\u8FCE\uFF1A\u4F60\u662F ${name}`,
      joined: (name) => `${name} \u52A0\u5165`,
      left: (name) => `${name} \u79BB\u5F00`,
      renamed: (from, to) => `${from} \u6539\u540D\u4E3A ${to}`,
      rename: (name) => `\u8BF7\u6C42\u6539\u540D\u4E3A ${name}`,
      away: (name) => `${name} \u7684\u6700\u540E\u4E00\u4E2A\u8FDE\u63A5\u65AD\u5F00\u4E86\uFF1A\u540D\u5B57\u4E3A TA \u4FDD\u7559\u4E00\u6BB5\u65F6\u95F4`,
      back: (name) => `${name} \u56DE\u6765\u4E86\uFF08\u540C\u4E00\u4E2A\u4F1A\u8BDD\uFF09`,
      error: (code) => `\u9519\u8BEF ${code}`,
      inspectMessage: (on) => on ? "\u8BF7\u670D\u52A1\u5668\u62A5\u544A\u8FD9\u4E2A\u8FDE\u63A5\u7684\u5E27" : "\u8BF7\u670D\u52A1\u5668\u4E0D\u518D\u62A5\u544A\u5E27",
      decodeRequest: (from) => `\u5E27\u5B9E\u9A8C\u5BA4\uFF1A\u8BF7\u670D\u52A1\u5668\u628A\u8FD9\u4E9B\u5B57\u8282\u5F53\u4F5C${from === "server" ? "\u670D\u52A1\u5668" : "\u5BA2\u6237\u7AEF"}\u7684\u5E27\u89E3\u7801`,
      decodedAnswer: (outcome, lines) => `\u5E27\u5B9E\u9A8C\u5BA4\u7684\u56DE\u7B54\uFF1A${FRAME_LAB_WORDS.zh.outcome(outcome)}\uFF08${lines} \u884C\uFF09`,
      presenceSummary: (joined, left, online) => `\u8FD9\u4E00\u79D2\uFF1A${joined} \u4EBA\u52A0\u5165\uFF0C${left} \u4EBA\u79BB\u5F00\uFF0C${online} \u4EBA\u5728\u7EBF`,
      membersRequest: (offset) => `\u8BF7\u6C42\u6210\u5458\u540D\u5355\uFF08\u4ECE\u7B2C ${offset + 1} \u4EBA\u8D77\uFF09`,
      membersPage: (offset, count, total) => count === 0 ? `\u6210\u5458\u540D\u5355\uFF1A\u5171 ${total} \u4EBA\uFF0C\u8FD9\u4E00\u9875\u662F\u7A7A\u7684` : `\u6210\u5458\u540D\u5355\uFF1A\u7B2C ${offset + 1}\u2013${offset + count} \u4EBA\uFF0C\u5171 ${total} \u4EBA`,
      historyRequest: (before) => `\u8BF7\u6C42 seq ${before} \u4E4B\u524D\u7684\u6D88\u606F`,
      historyPage: (count, before, more) => `seq ${before} \u4E4B\u524D\u7684 ${count} \u6761\u6D88\u606F` + (more ? "\uFF08\u670D\u52A1\u5668\u8FD8\u6709\u66F4\u65E9\u7684\uFF09" : "\uFF08\u6CA1\u6709\u66F4\u65E9\u7684\u4E86\uFF09"),
      protocolPing: "\u534F\u8BAE\u5C42 ping\uFF08opcode 0x9\uFF09",
      protocolPong: "\u534F\u8BAE\u5C42 pong\uFF08opcode 0xA\uFF09",
      pingNote: (direction) => direction === "sent" ? "\u670D\u52A1\u5668\u5B9A\u671F\u53D1 ping \u786E\u8BA4\u9875\u9762\u8FD8\u5728\uFF08\u9ED8\u8BA4\u6BCF 30 \u79D2\uFF09\uFF1B\u6D4F\u89C8\u5668\u81EA\u52A8\u56DE\u590D\uFF0CJavaScript \u770B\u4E0D\u5230\u8FD9\u4E24\u5E27" : "\u5BF9\u65B9\u5FC5\u987B\u5C3D\u5FEB\u56DE\u590D\u540C\u6837\u8D1F\u8F7D\u7684 pong",
      pongNote: (direction) => direction === "received" ? "\u6D4F\u89C8\u5668\u81EA\u52A8\u56DE\u590D\u670D\u52A1\u5668\u7684 ping\uFF1BJavaScript \u770B\u4E0D\u5230\u5B83" : "\u56DE\u590D\u9875\u9762\u7684 ping\uFF0C\u8D1F\u8F7D\u76F8\u540C",
      closeFrame: (direction) => direction === "received" ? "\u5173\u95ED\u5E27\uFF1A\u9875\u9762\u8981\u7ED3\u675F\u8FDE\u63A5" : "\u5173\u95ED\u5E27\uFF1A\u670D\u52A1\u5668\u8981\u7ED3\u675F\u8FDE\u63A5",
      continuation: "\u5206\u7247\u6D88\u606F\u7684\u540E\u7EED\u5E27",
      state: (from, to) => `\u72B6\u6001\uFF1A${from} \u2192 ${to}`,
      opening: (url) => `\u6253\u5F00\u8FDE\u63A5 ${url}`,
      rtt: (roundTripMs) => `\u5FC3\u8DF3\u5F80\u8FD4 ${roundTripMs} \u6BEB\u79D2\uFF08\u53D1\u51FA ping \u5230\u6536\u5230 pong\uFF09`,
      retry: (attempt, delayMs) => `\u7B2C ${attempt} \u6B21\u91CD\u8FDE\uFF0C${seconds(delayMs)} \u79D2\u540E\uFF08\u6307\u6570\u9000\u907F\u52A0\u968F\u673A\u6296\u52A8\uFF09`,
      closed: (code, reason, wasClean, current) => `\u8FDE\u63A5\u5173\u95ED\uFF1A${code}` + (reason === "" ? "" : ` \xB7 \u539F\u56E0 "${reason}"`) + (wasClean === false ? " \xB7 \u6CA1\u6709\u5B8C\u6210\u5173\u95ED\u63E1\u624B" : "") + (current ? "" : " \xB7 \uFF08\u5DF2\u653E\u5F03\u7684\u65E7\u8FDE\u63A5\uFF09"),
      socketError: "\u8FDE\u63A5\u51FA\u9519\uFF08\u6D4F\u89C8\u5668\u4E0D\u7ED9\u7EC6\u8282\uFF0C\u968F\u540E\u4F1A\u6709 close \u4E8B\u4EF6\uFF09",
      silent: (timeoutMs) => `\u5FC3\u8DF3 ${seconds(timeoutMs)} \u79D2\u5185\u6CA1\u6709\u56DE\u5E94\uFF1A\u653E\u5F03\u8FD9\u4E2A\u8FDE\u63A5`,
      notWelcomed: (timeoutMs) => `${seconds(timeoutMs)} \u79D2\u5185\u6CA1\u6709\u6536\u5230 welcome\uFF1A\u653E\u5F03\u8FD9\u4E2A\u8FDE\u63A5`,
      inspect: (on, connected) => on ? "\u5E27\u68C0\u67E5\u5668\u5DF2\u6253\u5F00" + (connected ? "\uFF1A\u4ECE\u73B0\u5728\u8D77\u670D\u52A1\u5668\u62A5\u544A\u8FD9\u4E2A\u8FDE\u63A5\u7684\u6BCF\u4E00\u5E27\uFF08\u63E1\u624B\u53EA\u5728\u8FDE\u63A5\u65F6\u4FDD\u7559\uFF0C\u4E0B\u6B21\u8FDE\u63A5\u65F6\u624D\u80FD\u770B\u5230\uFF09" : "\uFF1A\u4E0B\u6B21\u8FDE\u63A5\u65F6\u4ECE\u63E1\u624B\u5F00\u59CB\u62A5\u544A") : "\u5E27\u68C0\u67E5\u5668\u5DF2\u5173\u95ED"
    },
    en: {
      toggle: "Frames",
      heading: "Frame inspector",
      clear: "Clear",
      framesLabel: "Frames of this connection",
      pageToServer: "page \u2192 server",
      serverToPage: "server \u2192 page",
      handshake: "opening handshake",
      thisPage: "this page",
      fin: (fin) => fin ? "1 \xB7 the last frame of its message" : "0 \xB7 more frames of this message follow",
      rsv: (compressed) => compressed ? " \xB7 RSV1=1: compressed with permessage-deflate (RFC 7692 \xA76)" : " \xB7 no extension uses them",
      sentPlain: (threshold) => ` \xB7 sent uncompressed: shorter than ${byteSize(threshold, "bytes")} (--deflate-threshold), not worth compressing`,
      sentPlainWindow: (windowBits) => ` \xB7 sent uncompressed: the client asked for server_max_window_bits=${windowBits}, and zlib deflates only with windows of 2^9 bytes or more`,
      deflate: (direction, wireLength, length, percent) => direction === "received" ? `${wireLength} bytes of deflate data inflate to ${length} (${percent}%); the text above is what the server inflated` : `${length} bytes deflated to ${wireLength} (${percent}%); the text above is the message before compression`,
      inflatedSize: (length) => `${length} B inflated`,
      mask: (masked) => masked ? "1 \xB7 a browser must mask every frame it sends (RFC 6455 \xA75.3)" : "0 \xB7 a server never masks",
      length: (length, bits) => bits === 7 ? `${length} bytes \xB7 in the 7-bit length field itself (0\u2013125)` : `${length} bytes \xB7 the 7-bit field says ${bits === 16 ? 126 : 127}, the length follows in ${bits} bits`,
      xor: (masked, key, unmasked) => `each byte XOR the key byte in turn: ${masked} \u2295 ${key} = ${unmasked}`,
      moreBytes: (count) => ` \u2026 +${count} bytes`,
      noPayload: "no payload",
      compressedByPage: "the browser compressed this message (permessage-deflate), so the wire carries deflate data; the text above is what this page gave to send()",
      compressedByServer: "the server compressed this message (permessage-deflate); the text above is what the browser inflated it to",
      compressedUnknown: "compressed (permessage-deflate): deflate data, not readable text",
      notText: "not readable text",
      closeReason: (reason) => ` \xB7 reason "${reason}"`,
      say: (text) => `chat message "${text}"`,
      message: (from, text) => `chat message from ${from}: "${text}"`,
      appPing: "heartbeat ping (app level: JSON in a text frame)",
      appPong: "heartbeat pong (app level: JSON in a text frame)",
      welcome: (name) => `welcome: you are ${name}`,
      joined: (name) => `${name} joined`,
      left: (name) => `${name} left`,
      renamed: (from, to) => `${from} is now ${to}`,
      rename: (name) => `asks to be called ${name}`,
      away: (name) => `${name}'s last connection closed: the name is kept for them for a while`,
      back: (name) => `${name} is back (same session)`,
      error: (code) => `error ${code}`,
      inspectMessage: (on) => on ? "asks the server to report this connection's frames" : "asks the server to stop reporting frames",
      decodeRequest: (from) => `frame lab: asks the server to decode these bytes as ${from}'s frames`,
      decodedAnswer: (outcome, lines) => `frame lab's answer: ${FRAME_LAB_WORDS.en.outcome(outcome)} (${lines} lines)`,
      presenceSummary: (joined, left, online) => `this second: ${joined} joined, ${left} left, ${online} online`,
      membersRequest: (offset) => `asks for the member list from member ${offset + 1}`,
      membersPage: (offset, count, total) => count === 0 ? `member list: ${total} in all, an empty page` : `members ${offset + 1}\u2013${offset + count} of ${total}`,
      historyRequest: (before) => `asks for the messages before seq ${before}`,
      historyPage: (count, before, more) => `${count} messages before seq ${before}` + (more ? " (the server keeps older ones)" : " (no older ones)"),
      protocolPing: "protocol-level ping (opcode 0x9)",
      protocolPong: "protocol-level pong (opcode 0xA)",
      pingNote: (direction) => direction === "sent" ? "the server checks that the page is still there (every 30 s by default); the browser answers by itself, and JavaScript sees neither frame" : "the other side must answer soon with a pong carrying the same payload",
      pongNote: (direction) => direction === "received" ? "the browser answers the server's ping by itself; JavaScript never sees it" : "the answer to the page's ping, with the same payload",
      closeFrame: (direction) => direction === "received" ? "close frame: the page ends the connection" : "close frame: the server ends the connection",
      continuation: "a later frame of a fragmented message",
      state: (from, to) => `state: ${from} \u2192 ${to}`,
      opening: (url) => `opening ${url}`,
      rtt: (roundTripMs) => `heartbeat round trip ${roundTripMs} ms (ping sent to pong received)`,
      retry: (attempt, delayMs) => `reconnect attempt ${attempt} in ${seconds(delayMs)} s (exponential backoff, random jitter)`,
      closed: (code, reason, wasClean, current) => `socket closed: ${code}` + (reason === "" ? "" : ` \xB7 reason "${reason}"`) + (wasClean === false ? " \xB7 closing handshake not completed" : "") + (current ? "" : " \xB7 (an earlier socket, already given up)"),
      socketError: "socket error (the browser gives no details; a close event follows)",
      silent: (timeoutMs) => `no answer to the heartbeat within ${seconds(timeoutMs)} s: this socket is given up`,
      notWelcomed: (timeoutMs) => `no welcome within ${seconds(timeoutMs)} s: this socket is given up`,
      inspect: (on, connected) => on ? "inspector on" + (connected ? ": the server reports every frame of this connection from now on (the handshake is kept only when a connection opens, so it shows from the next one)" : ": the next connection is reported from its handshake on") : "inspector off"
    }
  };
  function hexToBytes(hex) {
    const pairs = hex.replace(/ /g, "").match(/../g) ?? [];
    return Uint8Array.from(pairs, (pair) => parseInt(pair, 16));
  }
  function bytesToHex(bytes, limit = bytes.length) {
    const shown = Array.from(bytes.subarray(0, limit), (byte) => byte.toString(16).padStart(2, "0"));
    return shown.join(" ") + (bytes.length > limit ? " \u2026" : "");
  }
  function describeCloseCode(code) {
    return `${code} (${CLOSE_CODE_NAMES[code] ?? (code >= 4e3 ? "application's own code" : "unknown")})`;
  }
  function previewText(bytes, totalLength) {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    const shortest = bytes.length < totalLength ? Math.max(0, bytes.length - 3) : bytes.length;
    for (let end = bytes.length; end >= shortest; end--) {
      let text;
      try {
        text = decoder.decode(bytes.subarray(0, end));
      } catch {
        continue;
      }
      if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(text)) return null;
      return text;
    }
    return null;
  }
  function describeChatJson(text, words) {
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      return null;
    }
    if (!isRecord(value)) return null;
    const asText = (field) => typeof field === "string" ? field : "";
    const asCount = (field) => isCount(field) ? field : 0;
    switch (value.type) {
      case "say":
        return words.say(asText(value.text));
      case "message":
        return words.message(asText(value.from), asText(value.text));
      case "ping":
        return words.appPing;
      case "pong":
        return words.appPong;
      case "welcome":
        return words.welcome(asText(value.name));
      case "joined":
        return words.joined(asText(value.name));
      case "left":
        return words.left(asText(value.name));
      case "away":
        return words.away(asText(value.name));
      case "back":
        return words.back(asText(value.name));
      case "renamed":
        return words.renamed(asText(value.from), asText(value.to));
      case "rename":
        return words.rename(asText(value.name));
      case "error":
        return words.error(asText(value.code));
      case "inspect":
        return words.inspectMessage(value.on !== false);
      case "decode":
        return words.decodeRequest(value.from === "server" ? "server" : "client");
      case "decoded":
        return words.decodedAnswer(asText(value.outcome), Array.isArray(value.lines) ? value.lines.length : 0);
      case "presence":
        return words.presenceSummary(asCount(value.joinedCount), asCount(value.leftCount), asCount(value.online));
      // The request and its answer share a type; only the answer carries the list.
      case "members":
        return Array.isArray(value.members) ? words.membersPage(asCount(value.offset), value.members.length, asCount(value.memberCount)) : words.membersRequest(asCount(value.offset));
      case "history":
        return Array.isArray(value.messages) ? words.historyPage(value.messages.length, asCount(value.before), value.more === true) : words.historyRequest(asCount(value.before));
      default:
        return null;
    }
  }
  function inspectSwitch(text) {
    try {
      const value = JSON.parse(text);
      return isRecord(value) && value.type === "inspect" ? value.on !== false : null;
    } catch {
      return null;
    }
  }
  function isDataOpcode(opcode) {
    return opcode === 0 || opcode === 1 || opcode === 2;
  }
  function describeTraceFrame(frame, direction, knownText, words, note = null) {
    const onWire = hexToBytes(frame.onWire);
    const payload = hexToBytes(frame.payload);
    const compressed = frame.rsv1;
    const inflated = note?.compressed === true ? note : null;
    const rsvBits = `${frame.rsv1 ? 1 : 0} ${frame.rsv2 ? 1 : 0} ${frame.rsv3 ? 1 : 0}`;
    const plain = note !== null && !note.compressed && !compressed ? note : null;
    const rsvMeaning = plain?.windowBits !== void 0 ? words.sentPlainWindow(plain.windowBits) : plain?.threshold !== void 0 ? words.sentPlain(plain.threshold) : words.rsv(compressed);
    const fields = [
      { label: "FIN", value: words.fin(frame.fin) },
      { label: "RSV1-3", value: rsvBits + rsvMeaning },
      { label: "opcode", value: `0x${frame.opcode.toString(16)} \xB7 ${frame.opcodeName}` },
      { label: "MASK", value: words.mask(frame.masked) },
      { label: "length", value: words.length(frame.length, frame.lengthBits) }
    ];
    const more = frame.length > HEX_BYTES_SHOWN ? words.moreBytes(frame.length - HEX_BYTES_SHOWN) : "";
    const shownHex = (bytes) => bytesToHex(bytes.subarray(0, HEX_BYTES_SHOWN)) + more;
    if (frame.maskKey !== null) {
      const key = hexToBytes(frame.maskKey);
      fields.push({ label: "masking key", value: bytesToHex(key) });
      if (frame.length > 0) {
        fields.push({ label: "masked", value: shownHex(onWire) }, { label: "unmasked", value: shownHex(payload) });
        const [first, keyByte, plain2] = [onWire[0], key[0], payload[0]];
        if (first !== void 0 && keyByte !== void 0 && plain2 !== void 0) {
          const hex = (byte) => byte.toString(16).padStart(2, "0");
          fields.push({ label: "\u2295", value: words.xor(hex(first), hex(keyByte), hex(plain2)) });
        }
      }
    } else if (frame.length > 0) {
      fields.push({ label: "payload", value: shownHex(payload) });
    }
    if (frame.length === 0) fields.push({ label: "payload", value: words.noPayload });
    let meaning = null;
    if (frame.opcode === 8) {
      meaning = words.closeFrame(direction);
      if (payload.length >= 2 && !compressed) {
        const code = payload[0] << 8 | payload[1];
        const reason = previewText(payload.subarray(2), frame.length - 2) ?? "";
        const value = describeCloseCode(code) + (reason === "" ? "" : words.closeReason(reason));
        fields.push({ label: "close", value });
        meaning = `${meaning} \xB7 ${describeCloseCode(code)}`;
      }
    } else if (frame.opcode === 9) {
      meaning = words.protocolPing;
      fields.push({ label: "note", value: words.pingNote(direction) });
    } else if (frame.opcode === 10) {
      meaning = words.protocolPong;
      fields.push({ label: "note", value: words.pongNote(direction) });
    } else if (isDataOpcode(frame.opcode) && frame.length > 0) {
      const plain2 = inflated !== null ? hexToBytes(inflated.payload) : compressed ? null : payload;
      const plainLength = inflated?.length ?? frame.length;
      const binary = inflated !== null ? inflated.binary : frame.opcode === 2;
      const prefix = plain2 === null || binary ? null : previewText(plain2, plainLength);
      let text = knownText;
      if (text !== null && plain2 !== null && (prefix === null || !text.startsWith(prefix))) text = null;
      if (text === null && prefix !== null) {
        const cut = plainLength - new TextEncoder().encode(prefix).length;
        text = prefix + (cut > 0 ? words.moreBytes(cut) : "");
      }
      fields.push({
        label: "text",
        value: text ?? (compressed && plain2 === null ? words.compressedUnknown : words.notText)
      });
      if (inflated !== null) {
        if (binary && plain2 !== null) fields.push({ label: "inflated", value: bytesToHex(plain2, HEX_BYTES_SHOWN) });
        const percent = inflated.length === 0 ? 0 : Math.round(inflated.wireLength / inflated.length * 100);
        fields.push({ label: "deflate", value: words.deflate(direction, inflated.wireLength, inflated.length, percent) });
      } else if (compressed && text !== null) {
        const value = direction === "received" ? words.compressedByPage : words.compressedByServer;
        fields.push({ label: "RSV1=1", value });
      }
      if (frame.opcode === 0) meaning = words.continuation;
      else if (text !== null) meaning = describeChatJson(text, words) ?? text;
    }
    const size = `${frame.opcodeName} \xB7 ${frame.length} B`;
    const summary = inflated === null ? size : `${size} (${words.inflatedSize(inflated.length)})`;
    return { summary: meaning === null ? summary : `${summary} \xB7 ${shorten(meaning, SUMMARY_CHARACTERS)}`, fields };
  }
  function describeClientEvent(event, words) {
    switch (event.kind) {
      case "state":
        return words.state(event.from, event.to);
      case "opening":
        return words.opening(event.url);
      case "rtt":
        return words.rtt(event.roundTripMs);
      case "retry":
        return words.retry(event.attempt, event.delayMs);
      case "closed": {
        const code = event.code === null ? "?" : describeCloseCode(event.code);
        return words.closed(code, event.reason, event.wasClean, event.current);
      }
      case "socket-error":
        return words.socketError;
      case "silent":
        return words.silent(event.timeoutMs);
      case "not-welcomed":
        return words.notWelcomed(event.timeoutMs);
      case "inspect":
        return words.inspect(event.on, event.connected);
    }
  }
  class InspectorLog {
    constructor(options) {
      __publicField(this, "options");
      __publicField(this, "limit");
      __publicField(this, "list", []);
      __publicField(this, "nextId", 1);
      /** Whether the server reports every frame the page sends from here on, so texts can be matched. */
      __publicField(this, "matching", false);
      /** Texts the page sent whose trace has not arrived yet, oldest first. */
      __publicField(this, "unmatched", []);
      /** The last message that arrived, for the trace of it that follows. */
      __publicField(this, "lastReceived", null);
      /**
       * In each direction, the frame that ended the last message, until the
       * server's note about that message comes. The server sends the note right
       * after the frame's trace, so the last such frame is the one it is about.
       */
      __publicField(this, "awaitingNote", { received: null, sent: null });
      this.options = options;
      this.limit = options.limit ?? INSPECTOR_LIMIT;
    }
    get entries() {
      return this.list;
    }
    clear() {
      this.list = [];
      this.options.onChange?.();
    }
    /** What the ChatConnection's observer is given: every event goes through here. */
    observe(event) {
      switch (event.kind) {
        case "socket":
          return this.socketOpened(event.tracedFromStart);
        case "sent":
          return this.pageSent(event.text);
        case "received":
          return this.pageReceived(event.text);
        case "trace":
          return this.trace(event.trace);
        default:
          return this.clientEvent(event);
      }
    }
    /** One of the page's own lines. */
    clientEvent(event) {
      const summary = describeClientEvent(event, this.options.words);
      this.add({ direction: "client", opcode: null, kind: event.kind, summary, fields: [], lines: [], serverLine: null });
    }
    /** A new socket: what was being matched belonged to the old one. */
    socketOpened(tracedFromStart) {
      this.matching = tracedFromStart;
      this.unmatched = [];
      this.lastReceived = null;
      this.awaitingNote = { received: null, sent: null };
    }
    /** A text the page sent, to be matched with the server's trace of it. */
    pageSent(text) {
      const inspect = inspectSwitch(text);
      if (inspect === true && !this.matching) {
        this.matching = true;
        this.unmatched = [];
        return;
      }
      if (!this.matching) return;
      this.unmatched.push(text);
      if (inspect === false) this.matching = false;
      if (this.unmatched.length > UNMATCHED_LIMIT) {
        this.matching = false;
        this.unmatched = [];
      }
    }
    /** A text that arrived (not a trace), for the trace of it that follows. */
    pageReceived(text) {
      this.lastReceived = text;
    }
    /** One frame of this connection as the server reported it, or its opening handshake. */
    trace(trace) {
      if (trace.direction === "handshake") {
        const { lines } = trace;
        const summary2 = this.options.words.handshake;
        this.add({ direction: "handshake", opcode: null, kind: null, summary: summary2, fields: [], lines, serverLine: null });
        return;
      }
      if (trace.direction === "note") return this.note(trace.of, trace.note, trace.line);
      const { frame, direction } = trace;
      let knownText = null;
      if (isDataOpcode(frame.opcode) && frame.fin) {
        if (direction === "received") {
          knownText = this.unmatched.shift() ?? null;
        } else {
          knownText = frame.opcode === 2 ? null : this.lastReceived;
          this.lastReceived = null;
        }
      }
      const { summary, fields } = describeTraceFrame(frame, direction, knownText, this.options.words);
      this.add({ direction, opcode: frame.opcodeName, kind: null, summary, fields, lines: [], serverLine: trace.line });
      if (isDataOpcode(frame.opcode) && frame.fin)
        this.awaitingNote[direction] = { id: this.nextId - 1, frame, knownText };
    }
    /**
     * The server's note about the message the last data frame in `of` ended:
     * that frame's entry is described again with it (the text a compressed
     * message inflates to, or why a short one went uncompressed). A note whose
     * frame is not in the list (cleared, or traced before this socket) is
     * dropped: on its own it would describe nothing on screen.
     */
    note(of, note, line) {
      const awaiting = this.awaitingNote[of];
      this.awaitingNote[of] = null;
      if (awaiting === null) return;
      const index = this.list.findIndex((entry2) => entry2.id === awaiting.id);
      const entry = this.list[index];
      if (entry === void 0) return;
      const { frame, knownText } = awaiting;
      const { summary, fields } = describeTraceFrame(frame, of, knownText, this.options.words, note);
      const serverLine = entry.serverLine === null ? line : `${entry.serverLine}
${line}`;
      this.list[index] = { ...entry, summary, fields, serverLine };
      this.options.onChange?.();
    }
    add(entry) {
      this.list.push({ id: this.nextId, time: this.options.now(), ...entry });
      this.nextId += 1;
      if (this.list.length > this.limit) this.list.splice(0, this.list.length - this.limit);
      this.options.onChange?.();
    }
  }
  function findInspectorElements() {
    return {
      inspectorToggle: findElement("inspector-toggle", HTMLButtonElement),
      inspector: findElement("inspector", HTMLElement),
      inspectorHeading: findElement("inspector-heading", HTMLElement),
      inspectorClear: findElement("inspector-clear", HTMLButtonElement),
      inspectorFrames: findElement("inspector-frames", HTMLOListElement)
    };
  }
  function clockTime(time) {
    const date = new Date(time);
    const two = (value) => String(value).padStart(2, "0");
    const milliseconds = String(date.getMilliseconds()).padStart(3, "0");
    return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${milliseconds}`;
  }
  class InspectorView {
    constructor(elements, words) {
      /** What the panel shows; the ChatConnection's observer feeds it (see startPage). */
      __publicField(this, "log");
      __publicField(this, "elements");
      __publicField(this, "words");
      /**
       * The entries on screen, oldest first; entries only ever join at the end
       * and leave at the start. `entry` is the object drawn: when the log holds
       * another one for that id, the entry changed (see InspectorEntry).
       */
      __publicField(this, "shown", []);
      __publicField(this, "renderQueued", false);
      this.elements = elements;
      this.words = words;
      this.log = new InspectorLog({ words, now: () => Date.now(), onChange: () => this.scheduleRender() });
    }
    /**
     * Opens the panel as it was before a reload (the connection keeps that in
     * sessionStorage), and lets its buttons switch the server's reports and
     * clear the list.
     */
    attach(connection) {
      const { inspectorToggle, inspectorClear } = this.elements;
      this.setOpen(connection.inspecting);
      inspectorToggle.addEventListener("click", () => {
        const open = !connection.inspecting;
        connection.setInspecting(open);
        this.setOpen(open);
      });
      inspectorClear.addEventListener("click", () => this.log.clear());
    }
    applyLanguage() {
      const { elements, words } = this;
      setText(elements.inspectorToggle, words.toggle);
      setText(elements.inspectorHeading, words.heading);
      setText(elements.inspectorClear, words.clear);
      elements.inspectorFrames.setAttribute("aria-label", words.framesLabel);
    }
    setOpen(open) {
      const { inspector, inspectorToggle, inspectorFrames } = this.elements;
      inspector.hidden = !open;
      inspectorToggle.setAttribute("aria-expanded", String(open));
      if (!open) return;
      this.render();
      inspectorFrames.scrollTop = inspectorFrames.scrollHeight;
    }
    /** Redraws once after a burst: a resumed connection brings many frames at once. */
    scheduleRender() {
      if (this.renderQueued) return;
      this.renderQueued = true;
      queueMicrotask(() => {
        this.renderQueued = false;
        this.render();
      });
    }
    render() {
      if (this.elements.inspector.hidden) return;
      const list = this.elements.inspectorFrames;
      const entries = this.log.entries;
      const wasAtBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      const oldestKept = entries[0]?.id ?? Infinity;
      while (this.shown.length > 0 && this.shown[0].id < oldestKept) this.shown.shift().element.remove();
      const offset = this.shown.length > 0 ? this.shown[0].id - oldestKept : 0;
      this.shown.forEach((row, index) => {
        const entry = entries[index + offset];
        if (entry === void 0 || entry.id !== row.id || entry === row.entry) return;
        const element = this.entryElement(entry);
        row.element.replaceWith(element);
        row.element = element;
        row.entry = entry;
      });
      const newestShown = this.shown[this.shown.length - 1]?.id ?? 0;
      const added = entries.filter((entry) => entry.id > newestShown).map((entry) => ({ id: entry.id, entry, element: this.entryElement(entry) }));
      list.append(...added.map((row) => row.element));
      this.shown.push(...added);
      if (wasAtBottom && added.length > 0) list.scrollTop = list.scrollHeight;
    }
    /** One entry; built once, since an entry never changes. All text goes in as text. */
    entryElement(entry) {
      const element = createElement("li", "frame");
      element.dataset.direction = entry.direction;
      if (entry.opcode !== null) element.dataset.opcode = entry.opcode;
      if (entry.kind !== null) element.dataset.kind = entry.kind;
      const head = createElement("p", "frame-head");
      const time = createElement("time", "");
      time.dateTime = new Date(entry.time).toISOString();
      time.textContent = clockTime(entry.time);
      const directions = {
        received: this.words.pageToServer,
        sent: this.words.serverToPage,
        handshake: this.words.handshake,
        client: this.words.thisPage
      };
      const direction = createElement("span", "frame-direction");
      direction.textContent = directions[entry.direction];
      const summary = createElement("span", "frame-summary");
      summary.textContent = entry.direction === "handshake" ? "" : entry.summary;
      head.append(time, " ", direction, " ", summary);
      element.append(head);
      if (entry.fields.length > 0) {
        const fields = createElement("dl", "frame-fields");
        for (const field of entry.fields) {
          const row = createElement("div", "");
          const label = createElement("dt", "");
          label.textContent = field.label;
          const value = createElement("dd", "");
          value.textContent = field.value;
          row.append(label, value);
          fields.append(row);
        }
        element.append(fields);
      }
      if (entry.lines.length > 0) {
        const lines = createElement("pre", "frame-lines");
        lines.textContent = entry.lines.join("\n");
        element.append(lines);
      }
      if (entry.serverLine !== null) {
        const raw = createElement("details", "frame-raw");
        const label = createElement("summary", "");
        label.textContent = "--trace";
        const line = createElement("code", "");
        line.textContent = entry.serverLine;
        raw.append(label, line);
        element.append(raw);
      }
      return element;
    }
  }
  const LAB_KEY = "37 fa 21 3d";
  function labBytes(count, byte) {
    return Array.from({ length: count }, (_, index) => byte(index).toString(16).padStart(2, "0")).join(" ");
  }
  const FRAME_LAB_PRESETS = [
    {
      id: "hello",
      label: { en: 'a masked "Hello" (\xA75.7)', zh: '\u52A0\u63A9\u7801\u7684 "Hello"\uFF08\xA75.7\uFF09' },
      hex: `81 85 ${LAB_KEY} 7f 9f 4d 51 58`,
      from: "client",
      outcome: "valid",
      closeCode: null
    },
    {
      id: "fragmented",
      label: { en: 'an unmasked "Hel" + "lo" in two frames (\xA75.7)', zh: '\u4E0D\u52A0\u63A9\u7801\u3001\u5206\u6210\u4E24\u5E27\u7684 "Hel" + "lo"\uFF08\xA75.7\uFF09' },
      hex: "01 03 48 65 6c 80 02 6c 6f",
      from: "server",
      outcome: "valid",
      closeCode: null
    },
    {
      id: "ping",
      label: { en: 'an unmasked ping carrying "Hello" (\xA75.7)', zh: '\u4E0D\u52A0\u63A9\u7801\u3001\u5E26 "Hello" \u7684 ping\uFF08\xA75.7\uFF09' },
      hex: "89 05 48 65 6c 6c 6f",
      from: "server",
      outcome: "valid",
      closeCode: null
    },
    {
      id: "binary-256",
      label: { en: "256 bytes of binary: a 16-bit length (\xA75.7)", zh: "256 \u5B57\u8282\u7684\u4E8C\u8FDB\u5236\u6D88\u606F\uFF1A16 \u4F4D\u957F\u5EA6\uFF08\xA75.7\uFF09" },
      hex: `82 7e 01 00 ${labBytes(256, (index) => index)}`,
      from: "server",
      outcome: "valid",
      closeCode: null
    },
    {
      id: "binary-64k",
      label: {
        en: "64 KiB of binary, the header only: a 64-bit length (\xA75.7)",
        zh: "64 KiB \u7684\u4E8C\u8FDB\u5236\u6D88\u606F\uFF0C\u53EA\u6709\u5E27\u5934\uFF1A64 \u4F4D\u957F\u5EA6\uFF08\xA75.7\uFF09"
      },
      hex: "82 7f 00 00 00 00 00 01 00 00",
      from: "server",
      outcome: "incomplete",
      closeCode: null
    },
    {
      id: "unmasked-client",
      label: { en: "an unmasked client frame (\xA75.1)", zh: "\u6CA1\u52A0\u63A9\u7801\u7684\u5BA2\u6237\u7AEF\u5E27\uFF08\xA75.1\uFF09" },
      hex: "81 05 48 65 6c 6c 6f",
      from: "client",
      outcome: "violation",
      closeCode: 1002
    },
    {
      id: "rsv1",
      label: { en: "RSV1 set with no extension agreed (\xA75.2)", zh: "\u6CA1\u6709\u534F\u5546\u6269\u5C55\u5374\u7F6E\u4E86 RSV1\uFF08\xA75.2\uFF09" },
      hex: `c1 85 ${LAB_KEY} 7f 9f 4d 51 58`,
      from: "client",
      outcome: "violation",
      closeCode: 1002
    },
    {
      id: "control-fragmented",
      label: { en: "a fragmented control frame: a ping with FIN=0 (\xA75.5)", zh: "\u5206\u7247\u7684\u63A7\u5236\u5E27\uFF1AFIN=0 \u7684 ping\uFF08\xA75.5\uFF09" },
      hex: `09 85 ${LAB_KEY} 7f 9f 4d 51 58`,
      from: "client",
      outcome: "violation",
      closeCode: 1002
    },
    {
      id: "control-too-long",
      label: { en: "a control frame over 125 bytes (\xA75.5)", zh: "\u8D85\u8FC7 125 \u5B57\u8282\u7684\u63A7\u5236\u5E27\uFF08\xA75.5\uFF09" },
      hex: `89 fe 00 7e ${LAB_KEY} ${labBytes(126, () => 0)}`,
      from: "client",
      outcome: "violation",
      closeCode: 1002
    },
    {
      id: "utf8-split",
      label: { en: "invalid UTF-8 split across two fragments (\xA78.1)", zh: "\u8DE8\u4E24\u4E2A\u5206\u7247\u7684\u65E0\u6548 UTF-8\uFF08\xA78.1\uFF09" },
      hex: `01 83 ${LAB_KEY} 7f 18 a3 80 81 ${LAB_KEY} 1f`,
      from: "client",
      outcome: "violation",
      closeCode: 1007
    },
    {
      id: "close-1005",
      label: { en: "close code 1005 on the wire (\xA77.4.1)", zh: "\u7EBF\u4E0A\u51FA\u73B0\u5173\u95ED\u7801 1005\uFF08\xA77.4.1\uFF09" },
      hex: `88 82 ${LAB_KEY} 34 17`,
      from: "client",
      outcome: "violation",
      closeCode: 1002
    },
    {
      id: "reserved-opcode",
      label: { en: "a reserved opcode, 0x3 (\xA75.2)", zh: "\u4FDD\u7559\u7684 opcode 0x3\uFF08\xA75.2\uFF09" },
      hex: `83 80 ${LAB_KEY}`,
      from: "client",
      outcome: "violation",
      closeCode: 1002
    }
  ];
  function isFrameLabError(error) {
    return error.code === "bad_message" && error.message.startsWith("Frame lab:");
  }
  class FrameLab {
    constructor() {
      __publicField(this, "current", { name: "idle" });
    }
    get state() {
      return this.current;
    }
    /** The request to send, or null while one is waiting. The hex goes as typed: the server reads it. */
    ask(hex, from) {
      if (this.current.name === "waiting") return null;
      const request = { hex: hex.trim(), from };
      this.current = { name: "waiting", request };
      return request;
    }
    /** The server's walk; one that nothing waits for (after a refusal) is not ours to show. */
    answered(answer) {
      if (this.current.name !== "waiting") return;
      const { request } = this.current;
      this.current = { name: "answered", request, lines: answer.lines, outcome: answer.outcome };
    }
    /** The server refused the request: hex it cannot read, or too many requests. */
    refused(message) {
      if (this.current.name !== "waiting") return;
      this.current = { name: "refused", request: this.current.request, message };
    }
    /** The connection is gone, and with it the answer. */
    close() {
      if (this.current.name !== "waiting") return;
      this.current = { name: "interrupted", request: this.current.request };
    }
  }
  const FRAME_LAB_WORDS = {
    zh: {
      toggle: "\u5E27\u5B9E\u9A8C\u5BA4",
      heading: "\u5E27\u5B9E\u9A8C\u5BA4",
      examples: "\u4F8B\u5B50",
      chooseExample: "\u9009\u4E00\u4E2A\u4F8B\u5B50\u2026",
      examplesFromRfc: "RFC 6455 \xA75.7 \u7684\u4F8B\u5B50",
      examplesBroken: "\u8FDD\u53CD\u89C4\u5219\u7684\u5E27",
      bytes: "\u5B57\u8282\uFF08\u5341\u516D\u8FDB\u5236\uFF09",
      bytesHint: "\u53EF\u4EE5\u5E26\u7A7A\u683C\u3001\u9017\u53F7\u3001\u5192\u53F7\u6216 0x\uFF1B\u6700\u591A 64 KiB\u3002\u6539\u4E00\u4E2A\u4F4D\uFF0C\u770B\u89E3\u7801\u5668\u600E\u4E48\u8BF4\u3002",
      readAs: "\u5F53\u4F5C",
      fromClient: "\u5BA2\u6237\u7AEF\u5E27\uFF08\u52A0\u63A9\u7801\uFF09",
      fromServer: "\u670D\u52A1\u5668\u5E27\uFF08\u4E0D\u52A0\u63A9\u7801\uFF09",
      decode: "\u89E3\u7801",
      decoding: "\u6B63\u5728\u89E3\u7801\u2026",
      needsConnection: "\u89E3\u7801\u9700\u8981\u8FDE\u63A5",
      idle: "\u9009\u4E00\u4E2A\u4F8B\u5B50\u6216\u8F93\u5165\u5B57\u8282\uFF0C\u7136\u540E\u6309\u201C\u89E3\u7801\u201D\uFF1A\u670D\u52A1\u5668\u7684\u89E3\u7801\u5668\u9010\u4F4D\u8BF4\u660E\u5B83\u8BFB\u5230\u4E86\u4EC0\u4E48\u3002",
      outcome: (outcome) => outcome === "valid" ? "\u2713 \u6709\u6548\uFF1A\u6BCF\u4E00\u5E27\u90FD\u89E3\u7801\u5B8C\u4E86" : outcome === "incomplete" ? "\u2026 \u76EE\u524D\u6709\u6548\uFF0C\u8FD8\u5728\u7B49\u66F4\u591A\u5B57\u8282\uFF1A\u6700\u540E\u4E00\u5E27\u6CA1\u6709\u6536\u5B8C" : outcome === "violation" ? "\u2717 \u8FDD\u53CD\u89C4\u5219\uFF1A\u8FDE\u63A5\u4F1A\u4EE5\u4E0B\u9762\u7684\u5173\u95ED\u7801\u5931\u8D25" : outcome,
      refused: (message) => `\u670D\u52A1\u5668\u62D2\u7EDD\u4E86\u8FD9\u4E2A\u8BF7\u6C42\uFF1A${message}`,
      interrupted: "\u56DE\u7B54\u5230\u6765\u4E4B\u524D\u8FDE\u63A5\u65AD\u4E86\uFF1B\u8FDE\u4E0A\u4EE5\u540E\u518D\u89E3\u7801\u4E00\u6B21\u3002",
      result: "\u89E3\u7801\u5668\u7684\u8FC7\u7A0B"
    },
    en: {
      toggle: "Frame lab",
      heading: "Frame lab",
      examples: "Examples",
      chooseExample: "Choose an example\u2026",
      examplesFromRfc: "RFC 6455 \xA75.7 examples",
      examplesBroken: "Frames that break a rule",
      bytes: "Bytes (hex)",
      bytesHint: "Spaces, commas, colons and 0x are fine; up to 64 KiB. Change one bit and see what the decoder says.",
      readAs: "Read as",
      fromClient: "client frames (masked)",
      fromServer: "server frames (unmasked)",
      decode: "Decode",
      decoding: "Decoding\u2026",
      needsConnection: "Decode: needs the connection",
      idle: "Choose an example or type bytes, then Decode: the server's decoder says what it reads, bit by bit.",
      outcome: (outcome) => outcome === "valid" ? "\u2713 valid: every frame decoded" : outcome === "incomplete" ? "\u2026 valid so far, waiting for more bytes: the last frame is not complete" : outcome === "violation" ? "\u2717 violation: the connection would be failed with the close code below" : outcome,
      refused: (message) => `The server refused the request: ${message}`,
      interrupted: "The connection was lost before the answer; decode again once connected.",
      result: "The decoder's walk"
    }
  };
  function describeFrameLab(state, connected, words) {
    const waiting = state.name === "waiting";
    const canDecode = connected && !waiting;
    const decodeLabel = waiting ? words.decoding : connected ? words.decode : words.needsConnection;
    switch (state.name) {
      case "idle":
      case "waiting":
        return { status: waiting ? words.decoding : words.idle, outcome: null, lines: [], decodeLabel, canDecode };
      case "answered":
        return {
          status: words.outcome(state.outcome),
          outcome: state.outcome,
          lines: state.lines,
          decodeLabel,
          canDecode
        };
      case "refused":
        return { status: words.refused(state.message), outcome: "refused", lines: [], decodeLabel, canDecode };
      case "interrupted":
        return { status: words.interrupted, outcome: null, lines: [], decodeLabel, canDecode };
    }
  }
  function findFrameLabElements() {
    return {
      toggle: findElement("framelab-toggle", HTMLButtonElement),
      panel: findElement("framelab", HTMLElement),
      heading: findElement("framelab-heading", HTMLElement),
      form: findElement("framelab-form", HTMLFormElement),
      presetLabel: findElement("framelab-preset-label", HTMLLabelElement),
      preset: findElement("framelab-preset", HTMLSelectElement),
      hexLabel: findElement("framelab-hex-label", HTMLLabelElement),
      hex: findElement("framelab-hex", HTMLTextAreaElement),
      hint: findElement("framelab-hint", HTMLElement),
      readAs: findElement("framelab-read-as", HTMLElement),
      fromClient: findElement("framelab-from-client", HTMLInputElement),
      fromClientLabel: findElement("framelab-from-client-label", HTMLElement),
      fromServer: findElement("framelab-from-server", HTMLInputElement),
      fromServerLabel: findElement("framelab-from-server-label", HTMLElement),
      decode: findElement("framelab-decode", HTMLButtonElement),
      status: findElement("framelab-status", HTMLElement),
      resultHeading: findElement("framelab-result-heading", HTMLElement),
      output: findElement("framelab-output", HTMLPreElement)
    };
  }
  class FrameLabView {
    constructor(elements, language, storage) {
      __publicField(this, "elements");
      __publicField(this, "words");
      __publicField(this, "language");
      __publicField(this, "storage");
      __publicField(this, "renderQueued", false);
      /** The state drawn last, so a redraw that changes nothing touches nothing (the status is read out). */
      __publicField(this, "drawn", null);
      this.elements = elements;
      this.language = language;
      this.words = FRAME_LAB_WORDS[language];
      this.storage = storage;
    }
    applyLanguage() {
      const { elements, words } = this;
      setText(elements.toggle, words.toggle);
      setText(elements.heading, words.heading);
      setText(elements.presetLabel, words.examples);
      setText(elements.hexLabel, words.bytes);
      setText(elements.hint, words.bytesHint);
      setText(elements.readAs, words.readAs);
      setText(elements.fromClientLabel, words.fromClient);
      setText(elements.fromServerLabel, words.fromServer);
      setText(elements.resultHeading, words.result);
      elements.hex.placeholder = `81 85 ${LAB_KEY} 7f 9f 4d 51 58`;
      const none = new Option(words.chooseExample, "");
      const groups = [
        { label: words.examplesFromRfc, presets: FRAME_LAB_PRESETS.filter((preset) => preset.closeCode === null) },
        { label: words.examplesBroken, presets: FRAME_LAB_PRESETS.filter((preset) => preset.closeCode !== null) }
      ].map(({ label, presets }) => {
        const group = document.createElement("optgroup");
        group.label = label;
        group.append(...presets.map((preset) => new Option(preset.label[this.language], preset.id)));
        return group;
      });
      elements.preset.replaceChildren(none, ...groups);
    }
    attach(connection) {
      const { elements } = this;
      this.setOpen(readStoredJson(this.storage, STORAGE_KEYS.frameLab) === true);
      elements.toggle.addEventListener("click", () => {
        const open = elements.panel.hidden !== false;
        writeStoredJson(this.storage, STORAGE_KEYS.frameLab, open);
        this.setOpen(open);
      });
      elements.preset.addEventListener("change", () => {
        const preset = FRAME_LAB_PRESETS.find((candidate) => candidate.id === elements.preset.value);
        if (preset === void 0) return;
        elements.hex.value = preset.hex;
        elements.fromClient.checked = preset.from === "client";
        elements.fromServer.checked = preset.from === "server";
      });
      elements.hex.addEventListener("input", () => elements.preset.value = "");
      elements.form.addEventListener("submit", (event) => {
        event.preventDefault();
        if (elements.decode.getAttribute("aria-disabled") === "true") return;
        connection.decode(elements.hex.value, elements.fromServer.checked ? "server" : "client");
      });
      this.render(connection);
    }
    /** Called on every change of the connection; draws once after a burst. */
    scheduleRender(connection) {
      if (this.renderQueued) return;
      this.renderQueued = true;
      queueMicrotask(() => {
        this.renderQueued = false;
        this.render(connection);
      });
    }
    setOpen(open) {
      this.elements.panel.hidden = !open;
      this.elements.toggle.setAttribute("aria-expanded", String(open));
    }
    render(connection) {
      const state = connection.frameLab;
      const connected = connection.state === "connected";
      if (this.drawn !== null && this.drawn.state === state && this.drawn.connected === connected) return;
      this.drawn = { state, connected };
      const { elements } = this;
      const shown = describeFrameLab(state, connected, this.words);
      setText(elements.decode, shown.decodeLabel);
      elements.decode.setAttribute("aria-disabled", String(!shown.canDecode));
      setText(elements.status, shown.status);
      if (shown.outcome === null) delete elements.status.dataset.outcome;
      else elements.status.dataset.outcome = shown.outcome;
      elements.output.replaceChildren(
        ...shown.lines.map((line) => {
          const span = createElement("span", "");
          const trimmed = line.trimStart();
          if (trimmed.startsWith("\u2717")) span.className = "lab-violation";
          else if (trimmed.startsWith("\u2192")) span.className = "lab-message";
          span.textContent = `${line}
`;
          return span;
        })
      );
      elements.output.hidden = shown.lines.length === 0;
      elements.resultHeading.hidden = shown.lines.length === 0;
    }
  }
  function startPage() {
    const language = pickLanguage(navigator.languages?.length ? navigator.languages : [navigator.language]);
    const inspector = new InspectorView(findInspectorElements(), INSPECTOR_WORDS[language]);
    inspector.applyLanguage();
    const lab = new FrameLabView(findFrameLabElements(), language, openSessionStorage());
    lab.applyLanguage();
    const connection = createChatPage(
      language,
      (event) => inspector.log.observe(event),
      () => lab.scheduleRender(connection)
    );
    inspector.attach(connection);
    lab.attach(connection);
    connection.start();
  }
  if (typeof document !== "undefined") {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startPage);
    else startPage();
  }
})();
