// @deepgram/sdk 5.x on Node: a session survives a dropped connection (issue 13).
//
// Usage: node resume_flow.mjs BASE_WS_URL
//
// The SDK sends one x-deepgram-session-id per client and reconnects by itself on any close but
// 1000, without resending Settings. The flow: Settings; an injected user turn and its reply;
// then it prints "CUT <session id>" and the test cuts the socket on the server's side (no close
// frame); the SDK reconnects; a second injected turn, with no Settings, must be answered. The
// last stdout line is a JSON report.

import { DeepgramClient, DeepgramEnvironment } from "@deepgram/sdk";

const [base] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const report = { opens: 0, closes: [], errors: [], before: [], after: [], session: "" };
let events = report.before;

async function waitFor(kind, ms) {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (events.some((e) => e.type === kind)) return true;
    await sleep(10);
  }
  return false;
}

const environment = { ...DeepgramEnvironment.Production, agent: base };
const client = new DeepgramClient({ apiKey: "harken-test-key", environment });
report.session = client.sessionId;
const conn = await client.agent.v1.connect({ reconnectAttempts: 3 });
conn.on("open", () => (report.opens += 1));
conn.on("message", (message) => {
  if (!(message instanceof Blob)) events.push(message);
});
conn.on("close", (event) => report.closes.push(event.code));
conn.on("error", (error) => report.errors.push(String(error?.message ?? error)));
conn.connect();
await conn.waitForOpen();

report.welcome = await waitFor("Welcome", 5000);
conn.sendSettings({
  type: "Settings",
  audio: {
    input: { encoding: "linear16", sample_rate: 16000 },
    output: { encoding: "linear16", sample_rate: 24000, container: "none" },
  },
  agent: {
    listen: { provider: { type: "deepgram", model: "nova-3" } },
    think: { provider: { type: "open_ai", model: "gpt-4o-mini" }, prompt: "Be brief." },
    speak: { provider: { type: "deepgram", model: "aura-2-thalia-en" } },
  },
});
report.applied = await waitFor("SettingsApplied", 5000);
conn.sendInjectUserMessage({ type: "InjectUserMessage", content: "Remember the word teal." });
report.first_reply = await waitFor("AgentAudioDone", 10000);

events = report.after;
console.log(`CUT ${client.sessionId}`);
const deadline = performance.now() + 15000;
while (report.opens < 2 && performance.now() < deadline) await sleep(10);
report.rewelcome = await waitFor("Welcome", 5000);
conn.sendInjectUserMessage({ type: "InjectUserMessage", content: "Which word was it?" });
report.second_reply = await waitFor("AgentAudioDone", 10000);
report.after = report.after.map((e) => e.type);
report.before = report.before.map((e) => e.type);
conn.close();
await sleep(200);
console.log(JSON.stringify(report));
process.exit(0);
