import { randomBytes } from "node:crypto";
import * as http from "node:http";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { gateway as gatewayPb } from "@switchyard/proto";

/** One measured run: one target, one API, one mode, one concurrency. */
export interface LoadJob {
  api: "openai" | "grpc";
  /** OpenAI: the base URL up to and including /v1. gRPC: host:port of an h2c GatewayService. */
  url: string;
  headers: Record<string, string>;
  stream: boolean;
  concurrency: number;
  /** Measured for this long, after `warmupMs` of the same load that is not measured. */
  durationMs: number;
  warmupMs: number;
  model: string;
  /** Every answer must have exactly this text; anything else counts as an error (a dropped token). */
  expectText: string;
  /** Per-request deadline: a request still running after it counts as hung. */
  deadlineMs: number;
}

/** What a run measured. */
export interface LoadResult {
  requests: number;
  errors: number;
  /** Requests that passed their deadline with no answer and no error. */
  hung: number;
  /** A few distinct error messages, with counts. */
  errorKinds: Record<string, number>;
  /** Time to the first answer text (streamed) or to the whole answer (not streamed), ms, sorted. */
  ttftMs: number[];
  totalMs: number[];
  elapsedMs: number;
}

interface Sample {
  ttftMs: number;
  totalMs: number;
}

/**
 * A closed-loop load generator: `concurrency` workers, each sending its next request as soon as
 * the previous one ends. Prompts are unique and unlike each other so no cache answers them.
 */
export async function runLoad(job: LoadJob): Promise<LoadResult> {
  const client = job.api === "openai" ? new OpenAiClient(job) : new GrpcClient(job);
  try {
    const samples: Sample[] = [];
    const result: LoadResult = { requests: 0, errors: 0, hung: 0, errorKinds: {}, ttftMs: [], totalMs: [], elapsedMs: 0 };
    const start = performance.now();
    const warmEnd = start + job.warmupMs;
    const end = warmEnd + job.durationMs;
    let n = 0;
    const worker = async () => {
      for (;;) {
        const t0 = performance.now();
        if (t0 >= end) return;
        const prompt = `${randomBytes(12).toString("hex")} bench ${n++}: ${"what is routing? ".repeat(1 + (n % 5))}`;
        const measured = t0 >= warmEnd;
        try {
          const s = await withDeadline(client.once(prompt), job.deadlineMs);
          if (measured) samples.push(s);
        } catch (err) {
          if (!measured) continue;
          result.errors++;
          if (err === HUNG) result.hung++;
          const kind = err === HUNG ? "hung past the deadline" : String((err as Error).message ?? err).slice(0, 160);
          result.errorKinds[kind] = (result.errorKinds[kind] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: job.concurrency }, worker));
    result.elapsedMs = performance.now() - warmEnd;
    result.requests = samples.length + result.errors;
    result.ttftMs = samples.map((s) => s.ttftMs).sort((a, b) => a - b);
    result.totalMs = samples.map((s) => s.totalMs).sort((a, b) => a - b);
    return result;
  } finally {
    client.close();
  }
}

const HUNG = new Error("hung");

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(HUNG), ms)))]).finally(() => clearTimeout(timer));
}

interface LoadClient {
  once(prompt: string): Promise<Sample>;
  close(): void;
}

/** The OpenAI Chat Completions API over HTTP/1.1 keep-alive, as SDKs use it. */
class OpenAiClient implements LoadClient {
  private readonly agent: http.Agent;
  private readonly target: URL;

  constructor(private readonly job: LoadJob) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: job.concurrency, maxFreeSockets: job.concurrency });
    this.target = new URL(`${job.url.replace(/\/$/, "")}/chat/completions`);
  }

  once(prompt: string): Promise<Sample> {
    const job = this.job;
    const body = JSON.stringify({
      model: job.model,
      stream: job.stream,
      ...(job.stream ? { stream_options: { include_usage: true } } : {}),
      temperature: 0,
      messages: [{ role: "user", content: prompt }],
    });
    return new Promise((resolve, reject) => {
      const start = performance.now();
      let ttft = -1;
      const req = http.request(
        this.target,
        { method: "POST", agent: this.agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...job.headers } },
        (res) => {
          res.setEncoding("utf8");
          let text = "";
          res.on("data", (chunk: string) => {
            if (ttft < 0 && job.stream && chunk.includes('"content":"') && /"content":"[^"]/.test(chunk)) ttft = performance.now() - start;
            text += chunk;
          });
          res.on("error", reject);
          res.on("end", () => {
            const total = performance.now() - start;
            if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 120)}`));
            const answer = job.stream ? streamedText(text) : jsonText(text);
            if (answer instanceof Error) return reject(answer);
            if (answer !== job.expectText) return reject(new Error(`incomplete answer (${answer.length} of ${job.expectText.length} characters)`));
            resolve({ ttftMs: job.stream ? (ttft < 0 ? total : ttft) : total, totalMs: total });
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The answer text of an SSE stream; an Error when it has an error event or no [DONE]. */
function streamedText(sse: string): string | Error {
  let text = "";
  let done = false;
  for (const line of sse.split("\n")) {
    if (!line.startsWith("data: ")) continue;
    const data = line.slice(6);
    if (data === "[DONE]") {
      done = true;
      continue;
    }
    const event = JSON.parse(data) as { error?: { message?: string }; choices?: { delta?: { content?: string | null } }[] };
    if (event.error) return new Error(`stream error: ${event.error.message ?? "?"}`);
    text += event.choices?.[0]?.delta?.content ?? "";
  }
  return done ? text : new Error("stream ended without [DONE]");
}

function jsonText(body: string): string | Error {
  const parsed = JSON.parse(body) as { choices?: { message?: { content?: string } }[] };
  const text = parsed.choices?.[0]?.message?.content;
  return typeof text === "string" ? text : new Error("no answer in the response body");
}

/** `switchyard.gateway.v1.GatewayService` over gRPC with `@grpc/grpc-js`, as internal services call it. */
class GrpcClient implements LoadClient {
  private readonly client: grpc.Client;
  private readonly metadata: grpc.Metadata;

  constructor(private readonly job: LoadJob) {
    this.client = new grpc.Client(job.url, grpc.credentials.createInsecure(), {});
    this.metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(job.headers)) this.metadata.set(k, v);
  }

  once(prompt: string): Promise<Sample> {
    const request = create(gatewayPb.CompleteRequestSchema, { model: this.job.model, temperature: 0, messages: [{ role: "user", content: prompt }] });
    const serialize = (m: gatewayPb.CompleteRequest) => Buffer.from(toBinary(gatewayPb.CompleteRequestSchema, m));
    const deserialize = (b: Buffer) => fromBinary(gatewayPb.CompleteResponseSchema, b);
    const start = performance.now();
    const expect = this.job.expectText;
    if (!this.job.stream) {
      return new Promise((resolve, reject) => {
        this.client.makeUnaryRequest("/switchyard.gateway.v1.GatewayService/Complete", serialize, deserialize, request, this.metadata, (err, res) => {
          const total = performance.now() - start;
          if (err) return reject(new Error(`gRPC ${grpc.status[err.code] ?? err.code}: ${err.details}`));
          if (!res?.completion) return reject(new Error("no completion in the response"));
          if (res.text !== expect) return reject(new Error(`incomplete answer (${res.text.length} of ${expect.length} characters)`));
          resolve({ ttftMs: total, totalMs: total });
        });
      });
    }
    return new Promise((resolve, reject) => {
      const call = this.client.makeServerStreamRequest("/switchyard.gateway.v1.GatewayService/StreamComplete", serialize, deserialize, request, this.metadata);
      let ttft = -1;
      let text = "";
      let completed = false;
      call.on("data", (m: gatewayPb.CompleteResponse) => {
        if (m.text) {
          if (ttft < 0) ttft = performance.now() - start;
          text += m.text;
        }
        if (m.completion) completed = true;
      });
      call.on("error", (err: grpc.ServiceError) => reject(new Error(`gRPC ${grpc.status[err.code] ?? err.code}: ${err.details}`)));
      call.on("end", () => {
        const total = performance.now() - start;
        if (!completed) return reject(new Error("stream ended without its completion message"));
        if (text !== expect) return reject(new Error(`incomplete answer (${text.length} of ${expect.length} characters)`));
        resolve({ ttftMs: ttft < 0 ? total : ttft, totalMs: total });
      });
    });
  }

  close(): void {
    this.client.close();
  }
}
