// harken demo page: the browser as a Voice Agent API client, no build step.
//
// Microphone → AudioWorklet (worklet.js: downmix + resample to 16 kHz linear16) → WebSocket;
// agent audio (linear16, 24 kHz) → AudioBufferSourceNodes scheduled back to back on one
// AudioContext, all stopped at once on UserStartedSpeaking (barge-in). The key, if any, travels
// as the WebSocket subprotocol pair ["token", key], as browsers cannot set headers.
//
// window.harken exposes counters for tests and the curious: scheduledSeconds (agent audio
// scheduled for playback), sentSeconds (microphone audio sent), flushes, messages (types seen).
"use strict";

(() => {
  const INPUT_RATE = 16000;
  const OUTPUT_RATE = 24000;
  const PATH = "/v1/agent/converse";
  const DEFAULTS = {
    prompt:
      "You are a friendly voice assistant. Answer in one or two short spoken sentences, " +
      "without lists or markdown.",
    voice: "deepgram/aura-2-thalia-en",
    greeting: "",
    clock: false,
    apikey: "",
  };
  const CLOCK = {
    name: "get_time",
    description: "The user's current local date and time. Call it when asked what time or day it is.",
    parameters: { type: "object", properties: {} },
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    start: $("start"), stop: $("stop"), level: $("level"), dot: $("dot"), status: $("status-text"),
    transcript: $("transcript"), empty: $("empty"), banner: $("banner"), bannerText: $("banner-text"),
    message: $("message"), send: $("send"),
    prompt: $("prompt"), voice: $("voice"), greeting: $("greeting"), clock: $("clock"), apikey: $("apikey"),
  };
  const stats = {
    state: "idle", scheduledSeconds: 0, chunksScheduled: 0, sentSeconds: 0, flushes: 0,
    messages: [], errors: [],
  };
  window.harken = stats;

  let session = null; // the running conversation, see start()

  // ------------------------------------------------------------------ settings

  function loadSettings() {
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem("harken.settings") || "{}"); } catch (_) { saved = {}; }
    const s = { ...DEFAULTS, ...saved };
    ui.prompt.value = s.prompt;
    ui.voice.value = s.voice;
    if (!ui.voice.value) ui.voice.value = DEFAULTS.voice;
    ui.greeting.value = s.greeting;
    ui.clock.checked = !!s.clock;
    ui.apikey.value = s.apikey;
  }

  function saveSettings() {
    const s = {
      prompt: ui.prompt.value, voice: ui.voice.value, greeting: ui.greeting.value,
      clock: ui.clock.checked, apikey: ui.apikey.value,
    };
    try { localStorage.setItem("harken.settings", JSON.stringify(s)); } catch (_) { /* private mode */ }
  }

  function speakProvider() {
    const [type, model] = ui.voice.value.split("/");
    return { type, model };
  }

  function settingsMessage() {
    const think = {
      provider: { type: "open_ai", model: "gpt-4o-mini" },
      prompt: ui.prompt.value.trim() || DEFAULTS.prompt,
    };
    if (ui.clock.checked) think.functions = [CLOCK];
    const agent = {
      language: "en",
      listen: { provider: { type: "deepgram", model: "nova-3" } },
      think,
      speak: { provider: speakProvider() },
    };
    if (ui.greeting.value.trim()) agent.greeting = ui.greeting.value.trim();
    return {
      type: "Settings",
      experimental: true,
      audio: {
        input: { encoding: "linear16", sample_rate: INPUT_RATE },
        output: { encoding: "linear16", sample_rate: OUTPUT_RATE, container: "none" },
      },
      agent,
    };
  }

  // ------------------------------------------------------------------ page state

  function setStatus(text, state) {
    ui.status.textContent = text;
    stats.state = state;
    ui.dot.className = "dot " + state;
  }

  function showError(text) {
    ui.bannerText.textContent = text;
    ui.banner.hidden = false;
    stats.errors.push(text);
  }

  function hideError() { ui.banner.hidden = true; }

  function addItem(role, text, extra) {
    ui.empty.hidden = true;
    const li = document.createElement("li");
    li.className = "line " + role;
    if (role === "user" || role === "assistant") li.dataset.role = role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = { user: "You", assistant: "Agent", call: "Function", note: "Note" }[role] || role;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.append(who, body);
    if (extra) li.append(extra);
    ui.transcript.append(li);
    li.scrollIntoView({ block: "nearest" });
    return li;
  }

  function badge(text, title) {
    const b = document.createElement("span");
    b.className = "badge";
    b.textContent = text;
    if (title) b.title = title;
    return b;
  }

  function setRunning(running) {
    ui.start.disabled = running;
    ui.stop.disabled = !running;
    ui.start.textContent = running ? "Talking…" : "Start";
    ui.message.disabled = ui.send.disabled = !running;
    if (!running) ui.level.style.width = "0";
  }

  // ------------------------------------------------------------------ playback

  class Player {
    constructor(ctx) {
      this.ctx = ctx;
      this.head = 0; // AudioContext time at which the next chunk starts
      this.sources = new Set();
      this.carry = null; // an odd trailing byte
    }

    play(buffer) {
      let bytes = new Uint8Array(buffer);
      if (this.carry !== null) {
        const joined = new Uint8Array(bytes.length + 1);
        joined[0] = this.carry;
        joined.set(bytes, 1);
        bytes = joined;
        this.carry = null;
      }
      if (bytes.length % 2) {
        this.carry = bytes[bytes.length - 1];
        bytes = bytes.subarray(0, bytes.length - 1);
      }
      if (bytes.length === 0) return;
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
      const floats = new Float32Array(bytes.length / 2);
      for (let i = 0; i < floats.length; i++) floats[i] = view.getInt16(2 * i, true) / 32768;
      const audio = this.ctx.createBuffer(1, floats.length, OUTPUT_RATE);
      audio.copyToChannel(floats, 0);
      const source = this.ctx.createBufferSource();
      source.buffer = audio;
      source.connect(this.ctx.destination);
      const now = this.ctx.currentTime;
      if (this.head < now + 0.01) this.head = now + 0.08; // ran dry: restart with a cushion
      source.start(this.head);
      this.head += audio.duration;
      this.sources.add(source);
      source.onended = () => this.sources.delete(source);
      stats.scheduledSeconds += audio.duration;
      stats.chunksScheduled += 1;
    }

    get playing() { return this.head > this.ctx.currentTime; }

    flush() {
      for (const source of this.sources) {
        try { source.stop(); } catch (_) { /* already stopped */ }
      }
      this.sources.clear();
      this.head = 0;
      this.carry = null;
      stats.flushes += 1;
    }
  }

  // ------------------------------------------------------------------ the conversation

  function micError(err) {
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
      return "Microphone access was denied. Allow the microphone for this page (the icon at the " +
        "left of the address bar) and press Start again.";
    }
    if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
      return "No microphone was found. Connect one and press Start again.";
    }
    if (name === "NotReadableError" || name === "TrackStartError") {
      return "The microphone could not be opened: another program may be using it.";
    }
    return "The microphone could not be started: " + (err && err.message ? err.message : err);
  }

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${PATH}`;
  }

  async function start() {
    if (session) return;
    hideError();
    saveSettings();
    setRunning(true);
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
      setRunning(false);
      setStatus("The microphone is unavailable here.", "error");
      showError("This page can only use the microphone in a secure context: open it as " +
        "http://localhost:PORT or http://127.0.0.1:PORT on this machine, or serve it over https.");
      return;
    }
    const s = { ws: null, ctx: null, stream: null, node: null, player: null, applied: false,
      opened: false, closing: false, failed: false, reply: null };
    session = s;
    if (ui.transcript.children.length) addItem("note", "New conversation.");
    setStatus("Starting the microphone…", "busy");
    try {
      s.ctx = new AudioContext({ latencyHint: "interactive" });
      if (s.ctx.state === "suspended") await s.ctx.resume();
      s.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: { ideal: 1 }, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      if (session !== s) return release(s); // Stop was pressed while the browser asked
    } catch (err) {
      stop();
      setStatus("No microphone.", "error");
      showError(micError(err));
      return;
    }
    try {
      await s.ctx.audioWorklet.addModule("/static/worklet.js");
      s.node = new AudioWorkletNode(s.ctx, "harken-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { targetRate: INPUT_RATE, chunkMs: 20 },
      });
      const mute = s.ctx.createGain(); // keeps the worklet pulled without making a sound
      mute.gain.value = 0;
      s.ctx.createMediaStreamSource(s.stream).connect(s.node).connect(mute).connect(s.ctx.destination);
      s.node.port.onmessage = (e) => onCapture(s, e.data);
    } catch (err) {
      stop();
      setStatus("Audio could not start.", "error");
      showError("The audio pipeline could not start: " + (err && err.message ? err.message : err));
      return;
    }
    if (session !== s) return release(s);
    s.player = new Player(s.ctx);
    connect(s);
  }

  function connect(s) {
    setStatus("Connecting to the agent…", "busy");
    const key = ui.apikey.value.trim();
    try {
      s.ws = key ? new WebSocket(wsUrl(), ["token", key]) : new WebSocket(wsUrl());
    } catch (err) {
      fail(s, "Could not open the WebSocket: " + err.message);
      return;
    }
    s.ws.binaryType = "arraybuffer";
    s.ws.onopen = () => {
      s.opened = true;
      s.ws.send(JSON.stringify(settingsMessage()));
    };
    s.ws.onmessage = (e) => {
      if (typeof e.data === "string") onMessage(s, JSON.parse(e.data));
      else s.player.play(e.data);
    };
    s.ws.onclose = (e) => onClose(s, e);
  }

  function onCapture(s, data) {
    const level = Math.min(1, data.level * 1.6);
    ui.level.style.width = `${Math.round(level * 100)}%`;
    if (s.applied && s.ws && s.ws.readyState === WebSocket.OPEN) {
      s.ws.send(data.pcm);
      stats.sentSeconds += data.pcm.byteLength / 2 / INPUT_RATE;
    }
  }

  function send(s, message) {
    if (s && s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify(message));
  }

  // One transcript line per agent reply: its sentences arrive one ConversationText each.
  function agentLine(s, text) {
    if (!s.reply) s.reply = { line: null, badge: null };
    if (s.reply.line) {
      s.reply.line.querySelector(".text").textContent += " " + text;
    } else {
      s.reply.line = addItem("assistant", text, s.reply.badge);
    }
  }

  function showLatency(s, msg) {
    const total = Number(msg.total_latency || 0).toFixed(2);
    const detail = `thinking ${Number(msg.ttt_latency || 0).toFixed(2)} s, ` +
      `speech ${Number(msg.tts_latency || 0).toFixed(2)} s`;
    const b = badge(`${total} s`, `Time to first audio: ${total} s (${detail})`);
    if (!s.reply) s.reply = { line: null, badge: null };
    s.reply.badge = b;
    if (s.reply.line) s.reply.line.append(b);
    stats.latencies = (stats.latencies || []).concat([Number(msg.total_latency || 0)]);
    setStatus(`Speaking: answered in ${total} s (${detail}).`, "speaking");
  }

  function listenAfterPlayback(s) {
    const left = s.player && s.player.playing ? s.player.head - s.ctx.currentTime : 0;
    setTimeout(() => {
      if (session === s && stats.state === "speaking") {
        setStatus("Listening: say something.", "listening");
      }
    }, Math.max(0, left * 1000));
  }

  function onMessage(s, msg) {
    stats.messages.push(msg.type);
    switch (msg.type) {
      case "Welcome":
        break;
      case "SettingsApplied":
        s.applied = true;
        setStatus("Listening: say something.", "listening");
        break;
      case "UserStartedSpeaking":
        s.player.flush();
        s.reply = null;
        setStatus("Hearing you…", "hearing");
        break;
      case "ConversationText":
        if (msg.role === "user") {
          s.reply = null;
          addItem("user", msg.content);
          setStatus("Thinking…", "thinking");
        } else {
          agentLine(s, msg.content);
        }
        break;
      case "AgentThinking":
        setStatus("Thinking…", "thinking");
        break;
      case "FunctionCallRequest":
        for (const fn of msg.functions || []) onFunctionCall(s, fn);
        break;
      case "FunctionCallResponse": // a server-side function finished
        addItem("call", `${msg.name} → ${msg.content}`);
        break;
      case "AgentStartedSpeaking":
        showLatency(s, msg);
        break;
      case "LatencyReport":
        break; // AgentStartedSpeaking carries the same numbers
      case "AgentAudioDone":
        s.reply = null;
        if (stats.state !== "hearing") listenAfterPlayback(s);
        break;
      case "PromptUpdated":
        addItem("note", "Prompt updated.");
        break;
      case "SpeakUpdated":
        addItem("note", "Voice updated.");
        break;
      case "Warning":
        addItem("note", `${msg.description} (${msg.code})`);
        break;
      case "Error":
        s.failed = true;
        showError(`The agent reported an error: ${msg.description} (${msg.code})`);
        setStatus("Error.", "error");
        break;
      default:
        break; // History, EndOfThought, InjectionRefused…
    }
  }

  function onFunctionCall(s, fn) {
    let args = {};
    try { args = JSON.parse(fn.arguments || "{}"); } catch (_) { args = {}; }
    const shown = `${fn.name}(${Object.keys(args).length ? JSON.stringify(args) : ""})`;
    if (!fn.client_side) {
      addItem("call", `${shown}, run by the server`);
      return;
    }
    let content;
    if (fn.name === CLOCK.name) {
      const now = new Date();
      content = JSON.stringify({
        time: now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
        date: now.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" }),
        timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      });
    } else {
      content = JSON.stringify({ error: `This page has no function named ${fn.name}.` });
    }
    addItem("call", `${shown} → ${content}`);
    send(s, { type: "FunctionCallResponse", id: fn.id, name: fn.name, content });
  }

  function onClose(s, e) {
    if (session !== s) return;
    const expected = s.closing;
    stop();
    if (expected) return;
    if (!s.opened) {
      setStatus("Not connected.", "error");
      showError(`Could not connect to the agent at ${wsUrl()}. Is the server running? ` +
        "If it requires an API key, enter the key in Settings (a wrong key is refused too).");
    } else if (!s.failed) {
      setStatus("Disconnected.", "error");
      const why = e.reason ? `: ${e.reason}` : "";
      showError(`The connection to the agent was lost (code ${e.code}${why}). Press Start to talk again.`);
    } else {
      setStatus("Stopped after an error.", "error");
    }
  }

  function fail(s, text) {
    stop();
    setStatus("Error.", "error");
    showError(text);
  }

  // Close the socket, the microphone and the AudioContext of a conversation.
  function release(s) {
    s.closing = true;
    if (s.ws && s.ws.readyState <= WebSocket.OPEN) {
      try { s.ws.close(1000); } catch (_) { /* closing anyway */ }
    }
    if (s.player) s.player.flush();
    if (s.node) s.node.port.onmessage = null;
    if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
    if (s.ctx && s.ctx.state !== "closed") s.ctx.close().catch(() => {});
  }

  function stop() {
    const s = session;
    session = null;
    setRunning(false);
    if (!s) return;
    release(s);
    if (stats.state !== "error") setStatus("Stopped. Press Start to talk again.", "idle");
  }

  // ------------------------------------------------------------------ wiring

  ui.start.addEventListener("click", () => { start(); });
  ui.stop.addEventListener("click", () => stop());
  $("banner-close").addEventListener("click", hideError);
  $("settings").addEventListener("submit", (e) => e.preventDefault());
  $("typed").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.message.value.trim();
    if (!text || !session || !session.applied) return;
    session.player.flush(); // typing interrupts the agent like speaking does
    session.reply = null;
    send(session, { type: "InjectUserMessage", content: text });
    ui.message.value = "";
  });
  ui.prompt.addEventListener("change", () => {
    saveSettings();
    if (session && session.applied) send(session, { type: "UpdatePrompt", prompt: ui.prompt.value.trim() || DEFAULTS.prompt });
  });
  ui.voice.addEventListener("change", () => {
    saveSettings();
    if (session && session.applied) send(session, { type: "UpdateSpeak", speak: { provider: speakProvider() } });
  });
  for (const el of [ui.greeting, ui.clock, ui.apikey]) el.addEventListener("change", saveSettings);
  window.addEventListener("beforeunload", () => stop());

  async function checkHealth() {
    try {
      const r = await fetch("/healthz", { cache: "no-store" });
      if (session) return;
      if (r.ok) {
        if (stats.state === "busy") setStatus("Ready. Press Start and allow the microphone.", "idle");
        return;
      }
      const body = await r.json().catch(() => ({}));
      if (body.status === "loading") {
        setStatus("The server is still loading its models…", "busy");
        setTimeout(checkHealth, 1000);
      } else if (body.status === "error") {
        showError(`The server could not load its models: ${body.detail || "see its log"}`);
      }
    } catch (_) { /* the Start button reports connection problems */ }
  }

  $("endpoint").textContent = wsUrl();
  loadSettings();
  setStatus("Press Start and allow the microphone.", "idle");
  checkHealth();
})();
