// @deepgram/sdk 5.x on Node, against harken's real models: the JavaScript twin of dg7_flow.py.
//
// Usage: node agent_flow.mjs BASE_WS_URL PLAN.json
//
// BASE_WS_URL is harken's address without a path (ws://127.0.0.1:PORT); the SDK appends
// /v1/agent/converse to the environment's `agent` URL. PLAN.json is written by
// tests/test_official_sdk_live.py (prompt, function, texts, and two files of recorded speech,
// linear16 mono). The flow: Settings; an injected user turn answered with text and audio; a
// client-side function call; a spoken turn; a turn ended by ForceEndTurn right after the last
// speech sample, with no audio after it. Then a second client, pointed at harken with
// `baseUrl` instead of `environment`, opens and closes a session. The last stdout line is a
// JSON report of the same shape as the Python drivers' (live_flow.py).
//
// The SDK reconnects on any close code but 1000 and does not resend Settings, so both
// connections ask for `reconnectAttempts: 0`, and the report counts opens and close codes.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import { DeepgramClient, DeepgramEnvironment } from "@deepgram/sdk";

const [base, planPath] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planPath, "utf8"));
const timeout = plan.reply_timeout * 1000;
const sdkVersion = createRequire(import.meta.url)("@deepgram/sdk/package.json").version;

const FRAME_SECONDS = 0.02;
const KEEP_ALIVE_MS = 5000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Log {
  constructor(sdk) {
    this.sdk = sdk;
    this.events = [];
    this.marks = {};
    this.stamps = {};
    this.steps = {};
    this.lastMark = 0;
    this.closed = false;
    this.start = performance.now();
  }
  now() {
    return Math.round(performance.now() - this.start) / 1000;
  }
  message(payload) {
    this.events.push({ t: this.now(), type: String(payload.type), msg: payload });
  }
  audio(size) {
    const last = this.events[this.events.length - 1];
    if (last && last.type === "audio") {
      last.bytes += size;
      last.frames += 1;
    } else {
      this.events.push({ t: this.now(), type: "audio", bytes: size, frames: 1 });
    }
  }
  mark(name) {
    this.lastMark = this.marks[name] = this.events.length;
  }
  stamp(name) {
    this.stamps[name] = this.now();
  }
  async waitFor(match, ms) {
    const deadline = performance.now() + ms;
    for (;;) {
      const found = this.events.slice(this.lastMark).find(match);
      if (found || performance.now() > deadline || this.closed) return found;
      await sleep(10);
    }
  }
  async wait(kind, ms = 5000) {
    return (await this.waitFor((e) => e.type === kind, ms)) !== undefined;
  }
  async waitFirst(kinds, ms) {
    return (await this.waitFor((e) => kinds.includes(e.type), ms))?.type === kinds[0];
  }
  async waitMessage(kind, ms = 5000) {
    return (await this.waitFor((e) => e.type === kind, ms))?.msg;
  }
  async waitUserText(ms) {
    const userText = (e) => e.type === "ConversationText" && e.msg.role === "user";
    return (await this.waitFor(userText, ms)) !== undefined;
  }
}

// Streams linear16 in real time, 20 ms a frame: the queued speech, else silence (or, with
// fillSilence off, nothing but a KeepAlive every few seconds).
class Microphone {
  constructor(conn, rate) {
    this.conn = conn;
    this.frame = Math.round(rate * FRAME_SECONDS) * 2;
    this.queue = [];
    this.silence = true;
    this.stopped = false;
    this.errors = [];
  }
  play(data) {
    let done;
    const playback = { data, sent: 0, done: new Promise((resolve) => (done = resolve)) };
    playback.resolve = done;
    this.queue.push(playback);
    return playback;
  }
  nextFrame() {
    while (this.queue.length) {
      const playback = this.queue[0];
      const chunk = playback.data.subarray(playback.sent, playback.sent + this.frame);
      playback.sent += chunk.length;
      const finished = playback.sent >= playback.data.length;
      if (finished) this.queue.shift();
      if (chunk.length) return [chunk, finished ? playback : null];
      playback.resolve();
    }
    return [this.silence ? new Uint8Array(this.frame) : null, null];
  }
  async run() {
    const start = performance.now();
    let frames = 0;
    let lastKeepAlive = start;
    while (!this.stopped) {
      frames += 1;
      const delay = start + frames * FRAME_SECONDS * 1000 - performance.now();
      if (delay > 0) await sleep(delay);
      const [frame, finished] = this.nextFrame();
      try {
        if (frame) {
          this.conn.sendMedia(frame);
        } else if (performance.now() - lastKeepAlive > KEEP_ALIVE_MS) {
          this.conn.sendKeepAlive({ type: "KeepAlive" });
          lastKeepAlive = performance.now();
        }
      } catch (error) {
        this.errors.push(String(error));
        return;
      } finally {
        if (finished) finished.resolve();
      }
    }
  }
}

function withTimeout(promise, ms) {
  return Promise.race([promise.then(() => true), sleep(ms).then(() => false)]);
}

// Opens a socket with the SDK and records everything on it into `log`.
async function open(client, log, connection) {
  const conn = await client.agent.v1.connect({ reconnectAttempts: 0 });
  conn.on("open", () => (connection.opens += 1));
  conn.on("message", (message) => {
    if (message instanceof Blob) log.audio(message.size);
    else log.message(message);
  });
  conn.on("close", (event) => {
    connection.closes.push(event.code);
    log.closed = true;
  });
  conn.on("error", (error) => connection.errors.push(String(error?.message ?? error)));
  conn.connect();
  await conn.waitForOpen();
  return conn;
}

function settings() {
  return {
    type: "Settings",
    audio: {
      input: { encoding: "linear16", sample_rate: plan.input_rate },
      output: { encoding: "linear16", sample_rate: plan.output_rate, container: "none" },
    },
    agent: {
      listen: { provider: { type: "deepgram", model: "nova-3" } },
      think: {
        provider: { type: "open_ai", model: "gpt-4o-mini" },
        prompt: plan.prompt,
        functions: [plan.function],
      },
      speak: { provider: { type: "deepgram", model: "aura-2-thalia-en" } },
    },
  };
}

async function mainFlow() {
  const log = new Log(`@deepgram/sdk ${sdkVersion}`);
  const steps = log.steps;
  const connection = { opens: 0, closes: [], errors: [] };
  const environment = { ...DeepgramEnvironment.Production, agent: base };
  const client = new DeepgramClient({ apiKey: "harken-test-key", environment });
  log.mark("settings"); // before connecting: Welcome comes at once
  const conn = await open(client, log, connection);
  const mic = new Microphone(conn, plan.input_rate);

  steps.welcome = await log.wait("Welcome");
  conn.sendSettings(settings());
  steps.settings_applied = await log.wait("SettingsApplied");
  const micRunning = mic.run(); // a microphone from here on: silence until there is speech

  log.mark("inject");
  conn.sendInjectUserMessage({ type: "InjectUserMessage", content: plan.injected });
  // a function call here would be the model's mistake: stop waiting, the pytest side says so
  steps.inject_answered = await log.waitFirst(["AgentAudioDone", "FunctionCallRequest"], timeout);

  log.mark("function");
  conn.sendInjectUserMessage({ type: "InjectUserMessage", content: plan.function_question });
  const request = await log.waitMessage("FunctionCallRequest", timeout);
  steps.function_requested = request !== undefined;
  log.mark("function_response");
  for (const call of request?.functions ?? []) {
    conn.sendFunctionCallResponse({
      type: "FunctionCallResponse",
      id: call.id,
      name: call.name,
      content: JSON.stringify(plan.function_result),
    });
  }
  steps.function_answered = await log.wait("AgentAudioDone", timeout);

  log.mark("spoken");
  mic.play(readFileSync(plan.spoken));
  steps.spoken_heard = await log.waitUserText(timeout);
  steps.spoken_answered = await log.wait("AgentAudioDone", timeout);

  log.mark("forced");
  mic.silence = false; // push-to-talk: after the speech, only ForceEndTurn
  const played = mic.play(readFileSync(plan.forced));
  steps.forced_played = await withTimeout(played.done, 60000);
  log.stamp("speech_end");
  conn.sendForceEndTurn({ type: "ForceEndTurn" });
  log.stamp("force_end_turn");
  steps.forced_heard = await log.waitUserText(timeout);
  steps.forced_answered = await log.wait("AgentAudioDone", timeout);

  log.mark("end");
  mic.stopped = true;
  await micRunning;
  steps.open_until_the_end = !log.closed;
  conn.close();
  steps.closed = await withTimeout(
    (async () => {
      while (!log.closed) await sleep(10);
    })(),
    5000,
  );
  await sleep(300); // a reconnect, if the SDK wanted one, would start now
  return { log, connection, micErrors: mic.errors };
}

// A second client pointed at harken with `baseUrl`: Settings, SettingsApplied, a clean close.
async function baseUrlFlow() {
  const log = new Log("baseUrl");
  const connection = { opens: 0, closes: [], errors: [] };
  const client = new DeepgramClient({ apiKey: "harken-test-key", baseUrl: base });
  const conn = await open(client, log, connection);
  const ok = (await log.wait("Welcome")) && (conn.sendSettings(settings()), true);
  const applied = ok && (await log.wait("SettingsApplied"));
  conn.close();
  await withTimeout(
    (async () => {
      while (!log.closed) await sleep(10);
    })(),
    5000,
  );
  await sleep(300);
  return { applied, connection };
}

const { log, connection, micErrors } = await mainFlow();
const second = await baseUrlFlow();
log.steps.base_url_settings_applied = second.applied;
console.log(
  JSON.stringify({
    sdk: log.sdk,
    steps: log.steps,
    events: log.events,
    marks: log.marks,
    stamps: log.stamps,
    connection,
    base_url_connection: second.connection,
    mic_errors: micErrors,
  }),
);
process.exit(0);
