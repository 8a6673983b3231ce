// harken microphone capture, an AudioWorkletProcessor ("harken-capture").
//
// Downmixes every input channel to mono, resamples from the AudioContext's rate (44.1 or
// 48 kHz, whatever the browser picked) to the session's input rate with a windowed-sinc
// low-pass (no aliasing), and posts 16-bit little-endian PCM chunks of `chunkMs` to the page:
// {pcm: ArrayBuffer, level: peak 0..1}.

const PHASES = 64; // kernel table resolution, per input sample
const ZEROS = 8; // zero crossings of the sinc on each side

class HarkenCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.outRate = opts.targetRate || 16000;
    this.step = sampleRate / this.outRate; // input samples per output sample
    // cutoff a little under the output's Nyquist frequency (cycles per input sample, x2)
    const band = Math.min(1, this.outRate / sampleRate) * 0.92;
    this.half = Math.ceil(ZEROS / band); // kernel half-width, input samples
    this.table = HarkenCapture.kernel(band, this.half);
    this.buf = new Float32Array(16384);
    this.len = this.half; // zeros before the first sample
    this.t = this.half; // where the next output sample sits, in buffer samples
    this.chunk = new Int16Array(Math.round((this.outRate * (opts.chunkMs || 20)) / 1000));
    this.fill = 0;
    this.peak = 0;
  }

  static kernel(band, half) {
    const size = 2 * half * PHASES + 1;
    const table = new Float32Array(size + 1);
    for (let i = 0; i < size; i++) {
      const d = i / PHASES - half; // distance in input samples
      const x = Math.PI * band * d;
      const sinc = d === 0 ? 1 : Math.sin(x) / x;
      const w = 0.42 + 0.5 * Math.cos((Math.PI * d) / half) + 0.08 * Math.cos((2 * Math.PI * d) / half);
      table[i] = band * sinc * w; // Blackman window
    }
    return table;
  }

  push(sample) {
    if (sample > this.peak) this.peak = sample;
    else if (-sample > this.peak) this.peak = -sample;
    this.chunk[this.fill++] = Math.max(-32768, Math.min(32767, Math.round(sample * 32768)));
    if (this.fill === this.chunk.length) {
      const pcm = this.chunk.slice().buffer;
      this.port.postMessage({ pcm, level: this.peak }, [pcm]);
      this.fill = 0;
      this.peak = 0;
    }
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    if (this.len + frames > this.buf.length) {
      const bigger = new Float32Array((this.len + frames) * 2);
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    const scale = 1 / channels.length;
    for (let i = 0; i < frames; i++) {
      let sum = 0;
      for (let c = 0; c < channels.length; c++) sum += channels[c][i];
      this.buf[this.len + i] = sum * scale;
    }
    this.len += frames;

    const half = this.half;
    const table = this.table;
    while (Math.floor(this.t) + half < this.len) {
      const t = this.t;
      const first = Math.ceil(t - half);
      const last = Math.floor(t + half);
      let acc = 0;
      let norm = 0;
      for (let n = first; n <= last; n++) {
        const pos = (n - t + half) * PHASES;
        const k = pos | 0;
        const weight = table[k] + (table[k + 1] - table[k]) * (pos - k);
        acc += this.buf[n] * weight;
        norm += weight;
      }
      this.push(norm > 0 ? acc / norm : 0);
      this.t += this.step;
    }
    // drop what no future output sample needs
    const keep = Math.floor(this.t) - half;
    if (keep > 0) {
      this.buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.t -= keep;
    }
    return true;
  }
}

registerProcessor("harken-capture", HarkenCapture);
