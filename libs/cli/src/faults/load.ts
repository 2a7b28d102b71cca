import { randomBytes } from "node:crypto";
import * as http from "node:http";

/** A continuous closed-loop streamed load, split into named phases by the suite that drives it. */
export interface FaultLoadJob {
  /** OpenAI base URL up to and including /v1. */
  url: string;
  model: string;
  concurrency: number;
  /** A request still running after this long is hung: it is cut and counted as such. */
  deadlineMs: number;
  /** The whole answer the upstream sends; anything else before [DONE] is a half answer. */
  expectText: string;
  headers?: Record<string, string>;
  /**
   * After a failed request, a worker waits this long before its next one, as SDK clients back off
   * (the OpenAI SDKs wait 0.5 s and more). 0 = none: a fast-failing mesh then meets a retry storm
   * of a few thousand requests a second, which on a small machine starves the restarting service.
   */
  errorPauseMs?: number;
}

/** How one request ended, as a client sees it. */
export const Outcome = {
  /** 200, the whole answer, then [DONE]. */
  served: 0,
  /** An HTTP error status with the OpenAI error envelope. */
  httpError: 1,
  /** A stream that ended with an SSE `data:` error event and no [DONE]. */
  streamError: 2,
  /** No end before the deadline. */
  hung: 3,
  /** [DONE] after a partial or wrong answer, or after an error event: a client would take it for whole. */
  halfAnswerDone: 4,
  /** Anything else: a reset connection, a stream cut with no error event, an error body without the envelope. */
  unclean: 5,
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/** [start Unix ms, end Unix ms, outcome, ms from the last data event to the error event (stream errors; else -1)]. */
export type RequestRecord = [number, number, Outcome, number];

/** The requests that started in one phase, and their distinct failure descriptions with counts. */
export interface PhaseRecords {
  records: RequestRecord[];
  kinds: Record<string, number>;
}

interface Ended {
  outcome: Outcome;
  kind?: string;
  stallToErrorMs?: number;
}

interface Phase extends PhaseRecords {
  inFlight: number;
  closed: boolean;
  waiters: (() => void)[];
}

/**
 * The fault suite's load generator: `concurrency` workers, each sending its next streamed request
 * as soon as the previous one ends, every prompt unique (no cache answers them). Unlike the bench
 * load generator, which measures latency, it judges every single answer the way a client would
 * (whole, cleanly failed, half, hung) and keeps when each started and ended, so the suite can tell
 * what a fault did and when service came back.
 */
export class FaultLoad {
  private readonly phases = new Map<string, Phase>();
  private current = "";
  private running = false;
  private workers: Promise<void>[] = [];
  private agent: http.Agent | undefined;
  private n = 0;

  /** Starts the workers, attributing requests to `phase`. */
  start(job: FaultLoadJob, phase: string): void {
    if (this.running) throw new Error("load already running");
    this.running = true;
    this.setPhase(phase);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: job.concurrency, maxFreeSockets: job.concurrency });
    const target = new URL(`${job.url.replace(/\/$/, "")}/chat/completions`);
    this.workers = Array.from({ length: job.concurrency }, async () => {
      while (this.running) {
        const phase = this.phases.get(this.current)!;
        phase.inFlight++;
        const t0 = Date.now();
        const prompt = `${randomBytes(8).toString("hex")} fault ${this.n++}: ${"what is routing? ".repeat(1 + (this.n % 5))}`;
        const ended = await once(target, this.agent!, job, prompt);
        phase.records.push([t0, Date.now(), ended.outcome, ended.stallToErrorMs ?? -1]);
        if (ended.kind) phase.kinds[ended.kind] = (phase.kinds[ended.kind] ?? 0) + 1;
        if (--phase.inFlight === 0 && phase.closed) for (const w of phase.waiters.splice(0)) w();
        if (ended.outcome !== Outcome.served && job.errorPauseMs) await new Promise((r) => setTimeout(r, job.errorPauseMs));
      }
    });
  }

  /** Requests from now on belong to `phase`; the previous phase takes no new requests. */
  setPhase(name: string): void {
    const previous = this.phases.get(this.current);
    if (previous) previous.closed = true;
    if (!this.phases.has(name)) this.phases.set(name, { records: [], kinds: {}, inFlight: 0, closed: false, waiters: [] });
    this.current = name;
    if (previous?.inFlight === 0) for (const w of previous.waiters.splice(0)) w();
  }

  /** Waits until every request of a closed phase has ended (bounded by the deadline); returns them and forgets them. */
  async collect(name: string): Promise<PhaseRecords> {
    const phase = this.phases.get(name);
    if (!phase) return { records: [], kinds: {} };
    if (name === this.current && this.running) throw new Error(`phase "${name}" is still current`);
    if (phase.inFlight > 0) await new Promise<void>((resolve) => phase.waiters.push(resolve));
    this.phases.delete(name);
    return { records: phase.records, kinds: phase.kinds };
  }

  /** Stops sending; resolves once every request in flight has ended. */
  async stop(): Promise<void> {
    this.running = false;
    const phase = this.phases.get(this.current);
    if (phase) phase.closed = true;
    await Promise.all(this.workers);
    this.agent?.destroy();
  }
}

/** One streamed request, judged. Never rejects. */
function once(target: URL, agent: http.Agent, job: FaultLoadJob, prompt: string): Promise<Ended> {
  const body = JSON.stringify({ model: job.model, stream: true, stream_options: { include_usage: true }, temperature: 0, messages: [{ role: "user", content: prompt }] });
  return new Promise<Ended>((resolve) => {
    let settled = false;
    const finish = (e: Ended) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(e);
    };
    const req = http.request(target, {
      method: "POST",
      agent,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...job.headers },
    });
    const deadline = setTimeout(() => {
      finish({ outcome: Outcome.hung, kind: "hung past the deadline" });
      req.destroy();
    }, job.deadlineMs);
    req.on("error", (err: NodeJS.ErrnoException) => finish({ outcome: Outcome.unclean, kind: `connection error: ${err.code ?? err.message}` }));
    req.on("response", (res) => {
      res.setEncoding("utf8");
      if (res.statusCode !== 200) {
        let text = "";
        res.on("data", (c: string) => (text += c));
        res.on("end", () => finish(judgeErrorBody(res.statusCode ?? 0, text)));
        res.on("error", () => finish({ outcome: Outcome.unclean, kind: `HTTP ${res.statusCode}: body cut` }));
        return;
      }
      const stream = new SseJudge(job.expectText);
      res.on("data", (c: string) => stream.feed(c));
      res.on("end", () => finish(stream.end()));
      // The connection went away before the end of the body: a cut, not an answer.
      res.on("error", () => finish({ outcome: Outcome.unclean, kind: `stream cut (${stream.state()})` }));
      res.on("close", () => finish({ outcome: Outcome.unclean, kind: `stream cut (${stream.state()})` }));
    });
    req.end(body);
  });
}

function judgeErrorBody(status: number, text: string): Ended {
  try {
    const e = (JSON.parse(text) as { error?: { message?: unknown; type?: unknown; code?: unknown } }).error;
    if (e && typeof e.message === "string" && typeof e.type === "string") return { outcome: Outcome.httpError, kind: `HTTP ${status} ${String(e.code ?? e.type)}` };
  } catch {
    // not JSON: falls through
  }
  return { outcome: Outcome.unclean, kind: `HTTP ${status} without the error envelope: ${text.slice(0, 60)}` };
}

/** Reads an SSE body as it arrives: the answer text, [DONE], an error event, and when each came. */
class SseJudge {
  private buffer = "";
  private text = "";
  private done = false;
  private error: { code?: unknown; type?: unknown; message?: unknown } | undefined;
  private lastDataAt = Date.now();
  private errorAt = 0;
  private afterEnd = false;
  private malformed = false;

  constructor(private readonly expect: string) {}

  feed(chunk: string): void {
    this.buffer += chunk;
    for (let i = this.buffer.indexOf("\n\n"); i >= 0; i = this.buffer.indexOf("\n\n")) {
      const event = this.buffer.slice(0, i);
      this.buffer = this.buffer.slice(i + 2);
      for (const line of event.split("\n")) if (line.startsWith("data: ")) this.data(line.slice(6));
    }
  }

  private data(data: string): void {
    if (this.done || this.error) this.afterEnd = true;
    if (data === "[DONE]") {
      this.done = true;
      return;
    }
    let event: { error?: SseJudge["error"]; choices?: { delta?: { content?: string | null } }[] };
    try {
      event = JSON.parse(data) as typeof event;
    } catch {
      this.malformed = true;
      return;
    }
    if (event.error) {
      this.error = event.error;
      this.errorAt = Date.now();
      return;
    }
    this.text += event.choices?.[0]?.delta?.content ?? "";
    this.lastDataAt = Date.now();
  }

  state(): string {
    return `${this.text.length} of ${this.expect.length} characters${this.done ? ", [DONE]" : ""}${this.error ? ", error event" : ""}`;
  }

  end(): Ended {
    if (this.malformed) return { outcome: Outcome.unclean, kind: "an event that is not JSON" };
    if (this.done && (this.error || this.text !== this.expect)) return { outcome: Outcome.halfAnswerDone, kind: `[DONE] after ${this.state()}` };
    if (this.afterEnd) return { outcome: Outcome.unclean, kind: `events after the end (${this.state()})` };
    if (this.done) return { outcome: Outcome.served };
    if (this.error) {
      const e = this.error;
      if (typeof e.message !== "string" || typeof e.type !== "string") return { outcome: Outcome.unclean, kind: "an error event without the envelope" };
      return { outcome: Outcome.streamError, kind: `stream error ${String(e.code ?? e.type)}`, stallToErrorMs: this.errorAt - this.lastDataAt };
    }
    return { outcome: Outcome.unclean, kind: `stream ended with neither [DONE] nor an error event (${this.state()})` };
  }
}
