"use strict";
(() => {
  var __defProp = Object.defineProperty;
  var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
  var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);
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
  function readChatMessage(value) {
    const { seq, id, from, text, time } = value;
    if (!isSeq(seq) || typeof from !== "string" || typeof text !== "string") return null;
    if (typeof time !== "number" || !Number.isFinite(time)) return null;
    return { seq, id: typeof id === "string" ? id : "", from, text, time };
  }
  function parseServerFrame(data) {
    if (typeof data !== "string") return null;
    let value;
    try {
      value = JSON.parse(data);
    } catch {
      return null;
    }
    if (!isRecord(value)) return null;
    switch (value.type) {
      case "welcome": {
        const { name, users, seq, epoch, resumed } = value;
        if (typeof name !== "string" || !isStringArray(users)) return null;
        if (typeof epoch !== "string" && typeof epoch !== "number") return null;
        return {
          type: "welcome",
          name,
          users,
          seq: isSeq(seq) ? seq : 0,
          epoch: String(epoch),
          resumed: resumed === true
        };
      }
      case "message": {
        const message = readChatMessage(value);
        return message === null ? null : { type: "message", message };
      }
      case "pong":
        return { type: "pong" };
      case "joined":
      case "left":
        return typeof value.name === "string" ? { type: value.type, name: value.name } : null;
      case "error": {
        const { code, message, id } = value;
        return {
          type: "error",
          code: typeof code === "string" ? code : "unknown",
          message: typeof message === "string" ? message : "",
          id: typeof id === "string" ? id : null
        };
      }
      default:
        return null;
    }
  }
  const STORAGE_KEYS = {
    outbox: "chatRoom.outbox",
    transcript: "chatRoom.transcript",
    name: "chatRoom.name"
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
  function createMessageId(source = globalThis.crypto, random = Math.random) {
    if (typeof source?.randomUUID === "function") return source.randomUUID();
    const bytes = new Uint8Array(16);
    if (typeof source?.getRandomValues === "function") {
      source.getRandomValues(bytes);
    } else {
      for (let index = 0; index < bytes.length; index++) bytes[index] = Math.floor(random() * 256);
    }
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }
  function isOutgoingMessage(value) {
    return isRecord(value) && typeof value.id === "string" && typeof value.text === "string" && typeof value.createdAt === "number";
  }
  const REMEMBERED_SENT_IDS = 1e3;
  class Outbox {
    constructor(storage) {
      __publicField(this, "storage");
      __publicField(this, "waiting", []);
      /** Ids of own messages the server has confirmed, so they still count as "mine" after a rename. */
      __publicField(this, "confirmedIds", []);
      this.storage = storage;
      const stored = readStoredJson(storage, STORAGE_KEYS.outbox);
      if (isRecord(stored)) {
        if (Array.isArray(stored.pending)) this.waiting = stored.pending.filter(isOutgoingMessage);
        if (isStringArray(stored.sent)) this.confirmedIds = stored.sent;
      }
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
    /** Whether this id belongs to a message sent from this tab, confirmed or not. */
    isOwn(id) {
      return id !== "" && (this.isPending(id) || this.confirmedIds.includes(id));
    }
    /** The server sent the message back: it is in the history now. Returns false for unknown ids. */
    acknowledge(id) {
      if (!this.isPending(id)) return false;
      this.waiting = this.waiting.filter((message) => message.id !== id);
      this.confirmedIds.push(id);
      if (this.confirmedIds.length > REMEMBERED_SENT_IDS) this.confirmedIds.splice(0, this.confirmedIds.length - REMEMBERED_SENT_IDS);
      this.save();
      return true;
    }
    /** The server refused the message for good (too long, empty): sending it again would not help. */
    discard(id) {
      if (!this.isPending(id)) return false;
      this.waiting = this.waiting.filter((message) => message.id !== id);
      this.save();
      return true;
    }
    save() {
      writeStoredJson(this.storage, STORAGE_KEYS.outbox, { pending: this.waiting, sent: this.confirmedIds });
    }
  }
  const TRANSCRIPT_LIMIT = 300;
  function isTranscriptEntry(value) {
    if (!isRecord(value) || typeof value.key !== "string") return false;
    if (value.kind === "message") {
      return typeof value.epoch === "string" && isRecord(value.message) && readChatMessage(value.message) !== null;
    }
    return value.kind === "notice" && (value.notice === "joined" || value.notice === "left" || value.notice === "gap") && typeof value.name === "string" && typeof value.time === "number";
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
      /** Seqs up to here were dropped to respect TRANSCRIPT_LIMIT; they count as already seen. */
      __publicField(this, "droppedThroughSeq", 0);
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
      const epoch = this.currentEpoch;
      if (epoch === null) return false;
      if (message.seq <= this.droppedThroughSeq || this.shownSeqs.has(message.seq)) return false;
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
      this.dropOldestBeyondLimit();
      this.save();
      return true;
    }
    addNotice(notice, name, time) {
      this.lines.push({ kind: "notice", key: this.newKey(), notice, name, time });
      this.dropOldestBeyondLimit();
      this.save();
    }
    dropOldestBeyondLimit() {
      while (this.lines.length > TRANSCRIPT_LIMIT) {
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
    save() {
      writeStoredJson(this.storage, STORAGE_KEYS.transcript, {
        epoch: this.currentEpoch,
        lastSeq: this.highestSeq,
        droppedThroughSeq: this.droppedThroughSeq,
        nextKeyNumber: this.nextKeyNumber,
        entries: this.lines
      });
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
  function buildSocketUrl(serverUrl, name, resumePoint) {
    const parameters = [];
    if (name !== null) parameters.push(`name=${encodeURIComponent(name)}`);
    if (resumePoint !== null) {
      parameters.push(`since=${resumePoint.since}`, `epoch=${encodeURIComponent(resumePoint.epoch)}`);
    }
    const url = new URL(serverUrl);
    const existing = url.search.slice(1);
    url.search = [existing, ...parameters].filter((part) => part !== "").join("&");
    return url.toString();
  }
  class ChatConnection {
    constructor(options) {
      __publicField(this, "options");
      __publicField(this, "timers");
      __publicField(this, "outbox");
      __publicField(this, "transcript");
      __publicField(this, "backoff");
      __publicField(this, "heartbeat");
      __publicField(this, "timing");
      __publicField(this, "socket", null);
      __publicField(this, "currentState", "offline");
      __publicField(this, "stopped", true);
      /** The name the server gave us in the last welcome. */
      __publicField(this, "confirmedName");
      /**
       * The name to ask for in every URL, kept in storage: the first name the
       * server gave us, or the one the user typed. It differs from confirmedName
       * only while the server lends us a stand-in because the name is taken,
       * usually by our own previous connection that the server has not yet
       * noticed is dead. When that one leaves, we ask for the name again.
       */
      __publicField(this, "nameToAskFor");
      __publicField(this, "onlineUsers", []);
      /**
       * Names held by our own connections that we gave up on but the server may
       * not have let go of yet. When it does, it tells everyone, us included,
       * that the name left; that is not news to show.
       */
      __publicField(this, "namesOfOldConnections", /* @__PURE__ */ new Set());
      __publicField(this, "retryAt", null);
      __publicField(this, "retryTimer", null);
      __publicField(this, "connectTimer", null);
      __publicField(this, "stableTimer", null);
      __publicField(this, "resendTimer", null);
      this.options = options;
      this.timers = options.timers;
      this.timing = { ...DEFAULT_TIMING, ...options.timing };
      this.outbox = new Outbox(options.storage);
      this.transcript = new Transcript(options.storage);
      this.backoff = new Backoff(options.random ?? Math.random, this.timing.backoffBaseMs, this.timing.backoffCapMs);
      this.heartbeat = new Heartbeat({
        intervalMs: this.timing.heartbeatIntervalMs,
        timeoutMs: this.timing.heartbeatTimeoutMs,
        timers: this.timers,
        sendPing: (time) => this.sendFrame({ type: "ping", t: time }),
        onSilence: () => this.handleLostConnection()
      });
      const storedName = options.storage.getItem(STORAGE_KEYS.name);
      this.confirmedName = storedName;
      this.nameToAskFor = storedName;
    }
    // --- What the page reads ---
    get state() {
      return this.currentState;
    }
    /** Failed attempts since the last stable connection: "attempt n" on screen. */
    get attempt() {
      return this.backoff.attempts;
    }
    /** When the next attempt is due (Timers.now() clock), while waiting for it; otherwise null. */
    get nextAttemptAt() {
      return this.retryAt;
    }
    /** The name the server gave us in the last welcome. */
    get name() {
      return this.confirmedName;
    }
    /** The name we ask for; differs from `name` while the server lends us a stand-in. */
    get wantedName() {
      return this.nameToAskFor;
    }
    /** Who is online, as the current connection was told; empty without one. */
    get users() {
      return this.onlineUsers;
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
    /** Own messages: sent under the current name, or sent from this tab under any name. */
    isMine(message) {
      return this.confirmedName !== null && message.from === this.confirmedName || this.outbox.isOwn(message.id);
    }
    // --- What the page does ---
    start() {
      if (!this.stopped) return;
      this.stopped = false;
      if (this.isOnline()) {
        this.openSocket();
      } else {
        this.setState("offline");
      }
    }
    stop() {
      this.stopped = true;
      this.discardSocket();
      this.cancelRetry();
      this.setState("offline");
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
      const connected = this.currentState === "connected";
      if (connected) this.sendSay(message);
      this.notify();
      return connected ? "sent" : "queued";
    }
    /** Reconnects under a new name; the server hands it out if nobody else holds it. */
    rename(rawName) {
      const name = rawName.trim();
      if (name === "" || name === this.nameToAskFor) return;
      this.rememberWantedName(name);
      if (name !== this.confirmedName) this.reconnectNow();
    }
    /**
     * The browser says the network is back or the page is visible again. If we
     * are waiting to retry, retry now. If we believe we are connected, check:
     * a network change is exactly when connections die without a word.
     */
    wake() {
      if (this.stopped) return;
      if (this.socket === null) {
        this.openSocket();
      } else if (this.currentState === "connected") {
        this.heartbeat.probe();
      }
    }
    /**
     * The browser says the network is gone. Waiting to retry is pointless until
     * it comes back; a connection that looks open is probably dead, so check it.
     */
    noteOffline() {
      if (this.stopped) return;
      if (this.socket === null) {
        this.cancelRetry();
        this.setState("offline");
      } else if (this.currentState === "connected") {
        this.heartbeat.probe();
      }
    }
    // --- Sockets ---
    openSocket() {
      this.cancelRetry();
      if (this.socket !== null || this.stopped) return;
      const url = buildSocketUrl(this.options.serverUrl, this.nameToAskFor, this.transcript.resumePoint());
      let socket;
      try {
        socket = this.options.createSocket(url);
      } catch {
        this.scheduleReconnect();
        return;
      }
      this.socket = socket;
      this.connectTimer = this.timers.setTimeout(() => this.handleLostConnection(), this.timing.connectTimeoutMs);
      this.setState(this.backoff.attempts === 0 ? "connecting" : "reconnecting");
      socket.addEventListener("message", (event) => {
        if (socket === this.socket) this.handleFrame(event.data);
      });
      socket.addEventListener("close", () => {
        if (socket === this.socket) this.handleLostConnection();
      });
      socket.addEventListener("error", () => {
        if (socket === this.socket) this.handleLostConnection();
      });
    }
    /** A deliberate reconnection, not a failure: no waiting, no backoff. */
    reconnectNow() {
      if (this.stopped) return;
      this.discardSocket();
      this.backoff.reset();
      this.openSocket();
    }
    /** The current socket closed, failed, fell silent or was never welcomed: replace it. */
    handleLostConnection() {
      this.discardSocket();
      this.scheduleReconnect();
    }
    /** Forgets the current socket, so nothing it does later has any effect, and closes it. */
    discardSocket() {
      const socket = this.socket;
      if (socket === null) return;
      this.socket = null;
      if (this.currentState === "connected" && this.confirmedName !== null) this.namesOfOldConnections.add(this.confirmedName);
      this.onlineUsers = [];
      this.heartbeat.stop();
      this.cancelTimer(this.connectTimer);
      this.cancelTimer(this.stableTimer);
      this.cancelTimer(this.resendTimer);
      this.connectTimer = this.stableTimer = this.resendTimer = null;
      try {
        socket.close();
      } catch {
      }
    }
    scheduleReconnect() {
      if (this.stopped || !this.isOnline()) {
        this.cancelRetry();
        this.setState("offline");
        return;
      }
      const delay = this.backoff.next();
      this.retryAt = this.timers.now() + delay;
      this.retryTimer = this.timers.setTimeout(() => this.openSocket(), delay);
      this.setState("reconnecting");
    }
    cancelRetry() {
      this.cancelTimer(this.retryTimer);
      this.retryTimer = null;
      this.retryAt = null;
    }
    // --- Frames from the server ---
    handleFrame(data) {
      this.heartbeat.noteActivity();
      const frame = parseServerFrame(data);
      if (frame === null) return;
      switch (frame.type) {
        case "welcome":
          this.handleWelcome(frame);
          break;
        case "message":
          this.outbox.acknowledge(frame.message.id);
          this.transcript.addMessage(frame.message);
          break;
        case "pong":
          break;
        case "joined":
          if (frame.name === this.confirmedName) return;
          this.namesOfOldConnections.delete(frame.name);
          if (!this.onlineUsers.includes(frame.name)) this.onlineUsers = [...this.onlineUsers, frame.name];
          this.transcript.addNotice("joined", frame.name, this.timers.now());
          break;
        case "left": {
          if (frame.name === this.confirmedName) return;
          const wasOurs = this.namesOfOldConnections.delete(frame.name);
          if (frame.name === this.nameToAskFor) {
            this.reconnectNow();
            return;
          }
          this.onlineUsers = this.onlineUsers.filter((user) => user !== frame.name);
          if (!wasOurs) this.transcript.addNotice("left", frame.name, this.timers.now());
          break;
        }
        case "error":
          this.handleError(frame);
          break;
      }
      this.notify();
    }
    handleWelcome(welcome) {
      this.cancelTimer(this.connectTimer);
      this.connectTimer = null;
      this.confirmedName = welcome.name;
      if (this.nameToAskFor === null) this.rememberWantedName(welcome.name);
      for (const name of this.namesOfOldConnections) {
        if (name === welcome.name || !welcome.users.includes(name)) this.namesOfOldConnections.delete(name);
      }
      this.onlineUsers = [...welcome.users];
      this.transcript.welcome(welcome.epoch, welcome.resumed, this.timers.now());
      this.setState("connected");
      this.heartbeat.start();
      this.cancelTimer(this.stableTimer);
      this.stableTimer = this.timers.setTimeout(() => {
        this.stableTimer = null;
        this.backoff.reset();
      }, this.timing.stableAfterMs);
      this.sendPending();
    }
    handleError(error) {
      if (error.code === "bad_name") {
        this.rememberWantedName(this.confirmedName);
      } else if (RESEND_LATER_CODES.has(error.code)) {
        if (this.resendTimer === null) {
          this.resendTimer = this.timers.setTimeout(() => {
            this.resendTimer = null;
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
      if (this.currentState !== "connected") return;
      for (const message of this.outbox.pending) this.sendSay(message);
    }
    sendSay(message) {
      this.sendFrame({ type: "say", id: message.id, text: message.text });
    }
    sendFrame(frame) {
      try {
        this.socket?.send(JSON.stringify(frame));
      } catch {
      }
    }
    // --- Small helpers ---
    rememberWantedName(name) {
      this.nameToAskFor = name;
      try {
        if (name === null) this.options.storage.removeItem(STORAGE_KEYS.name);
        else this.options.storage.setItem(STORAGE_KEYS.name, name);
      } catch {
      }
    }
    isOnline() {
      return this.options.isOnline?.() ?? true;
    }
    setState(state) {
      this.currentState = state;
      this.notify();
    }
    notify() {
      this.options.onChange?.();
    }
    cancelTimer(timerId) {
      if (timerId !== null) this.timers.clearTimeout(timerId);
    }
  }
  function resolveServerUrl(page) {
    const requested = new URLSearchParams(page.search).get("server");
    if (requested !== null && isWebSocketUrl(requested)) return requested;
    if (page.protocol === "https:") return `wss://${page.host}/`;
    if (page.protocol === "http:") return `ws://${page.host}/`;
    return "ws://localhost:5500/";
  }
  function isWebSocketUrl(text) {
    try {
      const { protocol } = new URL(text);
      return protocol === "ws:" || protocol === "wss:";
    } catch {
      return false;
    }
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
      nextTryIn: (seconds) => `\uFF0C${seconds} \u79D2\u540E\u91CD\u8BD5`,
      offline: "\u79BB\u7EBF",
      retryNow: "\u7ACB\u5373\u91CD\u8BD5",
      online: (count) => `\u5728\u7EBF\uFF08${count}\uFF09`,
      me: "\u6211",
      ownName: (name) => `${name}\uFF08\u6211\uFF09`,
      sending: "\u53D1\u9001\u4E2D\u2026",
      waitingToSend: "\u7B49\u5F85\u53D1\u9001",
      joined: (name) => `${name} \u52A0\u5165\u4E86\u804A\u5929\u5BA4`,
      left: (name) => `${name} \u79BB\u5F00\u4E86\u804A\u5929\u5BA4`,
      gap: "\u804A\u5929\u8BB0\u5F55\u5DF2\u91CD\u7F6E\uFF0C\u53EF\u80FD\u6709\u6D88\u606F\u7F3A\u5931",
      nameLabel: "\u540D\u5B57",
      inputLabel: "\u6D88\u606F",
      inputPlaceholder: "\u8F93\u5165\u6D88\u606F\uFF0C\u6309 Enter \u53D1\u9001",
      send: "\u53D1\u9001",
      messagesLabel: "\u804A\u5929\u6D88\u606F",
      tooLong: `\u6D88\u606F\u592A\u957F\u4E86\uFF08\u6700\u591A ${MAX_TEXT_LENGTH} \u4E2A\u5B57\u7B26\uFF09`,
      errors: {
        name_taken: "\u8FD9\u4E2A\u540D\u5B57\u6B63\u5728\u4F7F\u7528\u4E2D\uFF0C\u6682\u65F6\u7528\u4E86\u53E6\u4E00\u4E2A\uFF1B\u5B83\u7A7A\u51FA\u6765\u540E\u4F1A\u81EA\u52A8\u6362\u56DE",
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
      nextTryIn: (seconds) => `, next try in ${seconds} s`,
      offline: "Offline",
      retryNow: "Retry now",
      online: (count) => `Online (${count})`,
      me: "me",
      ownName: (name) => `${name} (me)`,
      sending: "sending\u2026",
      waitingToSend: "waiting to send",
      joined: (name) => `${name} joined`,
      left: (name) => `${name} left`,
      gap: "History was reset; some messages may be missing",
      nameLabel: "Name",
      inputLabel: "Message",
      inputPlaceholder: "Type a message, Enter sends",
      send: "Send",
      messagesLabel: "Chat messages",
      tooLong: `That message is too long (at most ${MAX_TEXT_LENGTH} characters)`,
      errors: {
        name_taken: "That name is in use, so you have another for now; you get it back once it is free",
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
  function findPageElements() {
    return {
      heading: findElement("heading", HTMLElement),
      status: findElement("status", HTMLElement),
      statusText: findElement("status-text", HTMLElement),
      statusCountdown: findElement("status-countdown", HTMLElement),
      retry: findElement("retry", HTMLButtonElement),
      usersHeading: findElement("users-heading", HTMLElement),
      users: findElement("users", HTMLUListElement),
      messages: findElement("messages", HTMLOListElement),
      alert: findElement("alert", HTMLElement),
      nameForm: findElement("name-form", HTMLFormElement),
      nameLabel: findElement("name-label", HTMLLabelElement),
      name: findElement("name", HTMLInputElement),
      composer: findElement("composer", HTMLFormElement),
      inputLabel: findElement("input-label", HTMLLabelElement),
      input: findElement("input", HTMLInputElement),
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
    constructor(elements, text) {
      __publicField(this, "elements");
      __publicField(this, "text");
      __publicField(this, "timeFormat", new Intl.DateTimeFormat(void 0, { hour: "2-digit", minute: "2-digit" }));
      __publicField(this, "dateAndTimeFormat", new Intl.DateTimeFormat(void 0, { dateStyle: "medium", timeStyle: "medium" }));
      /** Lines currently in the list, by key: a message's id, or the transcript key of a notice. */
      __publicField(this, "messageRows", /* @__PURE__ */ new Map());
      __publicField(this, "noticeRows", /* @__PURE__ */ new Map());
      __publicField(this, "renderQueued", false);
      /** Scroll to the newest line on the next render even if the reader had scrolled up. */
      __publicField(this, "scrollToNewest", true);
      __publicField(this, "alertTimer", null);
      /** The server error code the alert line shows, if it shows one. */
      __publicField(this, "alertCode", null);
      /** The users list as last drawn, to skip redrawing it when nothing changed. */
      __publicField(this, "shownUsers", "");
      this.elements = elements;
      this.text = text;
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
      elements.input.placeholder = text.inputPlaceholder;
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
      if (this.alertCode === "name_taken" && connection.name === connection.wantedName) this.hideAlert();
      this.renderStatus(connection);
      this.renderUsers(connection);
      this.renderName(connection);
      this.renderMessages(connection);
    }
    followNewest() {
      this.scrollToNewest = true;
    }
    renderStatus(connection) {
      const { status, statusText, statusCountdown, retry } = this.elements;
      const { state, attempt, nextAttemptAt } = connection;
      status.dataset.state = state;
      status.dataset.attempt = String(attempt);
      const labels = {
        connecting: this.text.connecting,
        connected: connection.name === null ? this.text.connected : `${this.text.connected} \xB7 ${connection.name}`,
        reconnecting: this.text.reconnecting(attempt),
        offline: this.text.offline
      };
      setText(statusText, labels[state]);
      const waiting = state === "reconnecting" && nextAttemptAt !== null;
      const seconds = waiting ? Math.max(0, Math.ceil((nextAttemptAt - Date.now()) / 1e3)) : 0;
      setText(statusCountdown, waiting ? this.text.nextTryIn(seconds) : "");
      retry.hidden = !(waiting || state === "offline");
    }
    showAlert(message, code = null) {
      const { alert } = this.elements;
      setText(alert, message);
      alert.hidden = false;
      this.alertCode = code;
      if (this.alertTimer !== null) window.clearTimeout(this.alertTimer);
      this.alertTimer = window.setTimeout(() => this.hideAlert(), 8e3);
    }
    showServerError(error) {
      this.showAlert(this.text.errors[error.code] ?? (error.message || error.code), error.code);
    }
    hideAlert() {
      const { alert } = this.elements;
      alert.hidden = true;
      alert.textContent = "";
      this.alertCode = null;
    }
    renderUsers(connection) {
      const { users, usersHeading } = this.elements;
      setText(usersHeading, this.text.online(connection.users.length));
      const signature = JSON.stringify([connection.name, connection.users]);
      if (signature === this.shownUsers) return;
      this.shownUsers = signature;
      users.replaceChildren(
        ...connection.users.map((user) => {
          const isMe = user === connection.name;
          const item = createElement("li", isMe ? "user me" : "user");
          item.dataset.name = user;
          item.textContent = isMe ? this.text.ownName(user) : user;
          return item;
        })
      );
    }
    renderName(connection) {
      const { name } = this.elements;
      if (document.activeElement !== name) name.value = connection.name ?? "";
    }
    renderMessages(connection) {
      const list = this.elements.messages;
      const wasAtBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
      const followNewest = this.scrollToNewest || wasAtBottom;
      this.scrollToNewest = false;
      const wanted = [];
      const usedMessageKeys = /* @__PURE__ */ new Set();
      const usedNoticeKeys = /* @__PURE__ */ new Set();
      const messageKey = (id, fallback) => id !== "" && !usedMessageKeys.has(id) ? id : fallback;
      for (const entry of connection.entries) {
        if (entry.kind === "notice") {
          usedNoticeKeys.add(entry.key);
          wanted.push(this.noticeRow(entry.key, entry.notice, entry.name, entry.time));
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
        const from = connection.name ?? this.text.me;
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
      if (followNewest) list.scrollTop = list.scrollHeight;
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
      setText(row.me, line.mine ? this.text.me : "");
      row.time.hidden = line.time === null;
      if (line.time !== null) {
        const date = new Date(line.time);
        row.time.dateTime = date.toISOString();
        row.time.title = this.dateAndTimeFormat.format(date);
        setText(row.time, this.timeFormat.format(date));
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
        me: createElement("span", "me-badge"),
        time: createElement("time", "time"),
        mark: createElement("span", "mark"),
        text: createElement("p", "text")
      };
      meta.append(row.from, row.me, row.time, row.mark);
      element.append(meta, row.text);
      return row;
    }
    noticeRow(key, notice, name, time) {
      const existing = this.noticeRows.get(key);
      if (existing !== void 0) return existing;
      const element = createElement("li", "notice");
      element.dataset.kind = notice;
      const words = notice === "joined" ? this.text.joined(name) : notice === "left" ? this.text.left(name) : this.text.gap;
      const date = new Date(time);
      const timeElement = createElement("time", "time");
      timeElement.dateTime = date.toISOString();
      timeElement.textContent = this.timeFormat.format(date);
      element.append(timeElement, " ", words);
      this.noticeRows.set(key, element);
      return element;
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
  const browserTimers = {
    setTimeout: (callback, delayMs) => window.setTimeout(callback, delayMs),
    clearTimeout: (timerId) => window.clearTimeout(timerId),
    now: () => Date.now()
  };
  function startPage() {
    const elements = findPageElements();
    const text = TEXT[pickLanguage(navigator.languages?.length ? navigator.languages : [navigator.language])];
    const view = new ChatView(elements, text);
    view.applyLanguage();
    const connection = new ChatConnection({
      serverUrl: resolveServerUrl(location),
      createSocket: (url) => new WebSocket(url),
      storage: openSessionStorage(),
      timers: browserTimers,
      timing: readTimingFromQuery(location.search),
      isOnline: () => navigator.onLine,
      onChange: () => view.scheduleRender(connection),
      onServerError: (error) => view.showServerError(error)
    });
    elements.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const outcome = connection.send(elements.input.value);
      if (outcome === "too_long") view.showAlert(text.tooLong);
      if (outcome === "sent" || outcome === "queued") {
        elements.input.value = "";
        view.followNewest();
      }
    });
    elements.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.isComposing || event.keyCode === 229)) event.preventDefault();
    });
    elements.nameForm.addEventListener("submit", (event) => {
      event.preventDefault();
      connection.rename(elements.name.value);
      elements.input.focus();
    });
    elements.name.addEventListener("change", () => connection.rename(elements.name.value));
    elements.name.addEventListener("blur", () => view.scheduleRender(connection));
    elements.retry.addEventListener("click", () => connection.wake());
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
      get users() {
        return [...connection.users];
      },
      get lastSeq() {
        return connection.lastSeq;
      },
      get epoch() {
        return connection.epoch;
      },
      get outboxLength() {
        return connection.pending.length;
      }
    });
    view.render(connection);
    connection.start();
  }
  if (typeof document !== "undefined") {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startPage);
    else startPage();
  }
})();
