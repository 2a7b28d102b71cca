import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname } from "node:path";
import type { ServiceName } from "@switchyard/config";
import { admin } from "@switchyard/proto";
import { createServiceClient } from "@switchyard/rpc";
import { DEFAULT_FAKE_UPSTREAM, type FakeUpstreamOptions } from "../bench/fake-upstream.js";
import { LoadProcess, MeshUnderTest, NatsServer, PostgresUnderTest, RedisServer, Upstreams, waitFor } from "./harness.js";
import { Outcome, type PhaseRecords, type RequestRecord } from "./load.js";
import type { UpstreamControl } from "./upstream.js";

/** Every fault the suite knows, in the order a full run injects them. */
export const FAULTS = [
  "kill-classifier",
  "kill-policy",
  "kill-cache",
  "kill-provider",
  "kill-ledger",
  "nats-down",
  "postgres-down",
  "redis-down",
  "redis-sigstop",
  "upstream-429",
  "upstream-500-bursts",
  "upstream-stall",
] as const;
export type FaultName = (typeof FAULTS)[number];

/** How long each part of a run lasts, in ms (retry-after in seconds). */
export interface FaultTimings {
  /** Load with nothing wrong, before the first fault (a baseline row). */
  baselineMs: number;
  /** Normal load at the start of every fault's window, before the fault. */
  leadMs: number;
  /** NATS stopped for this long. */
  natsDownMs: number;
  /** The ledger's Postgres unreachable for this long. */
  postgresDownMs: number;
  /** Redis stopped (process gone) for this long. */
  redisDownMs: number;
  /** Redis SIGSTOPped (connections accepted, nothing answered) for this long. */
  redisPausedMs: number;
  /** The primary upstream answers 429 for this long ... */
  rateLimitedMs: number;
  /** ... with this `retry-after` (longer than the policy's 10 s circuit, so the circuit cannot hide whether it is honoured). */
  retryAfterS: number;
  /** 500s from the primary upstream in `bursts` bursts of `burstMs`, `burstGapMs` apart. */
  bursts: number;
  burstMs: number;
  burstGapMs: number;
  /** The primary upstream stalls mid-stream for this long. */
  stallMs: number;
  /** Watched after each fault is over (for a kill: after the new process is ready); its tail must run clean. */
  settleMs: number;
  /** Service must be back this soon after the fault is over (for a kill: after the kill). */
  recoveryBoundMs: number;
}

export const FULL_TIMINGS: FaultTimings = {
  baselineMs: 10_000,
  leadMs: 2_000,
  natsDownMs: 60_000,
  postgresDownMs: 60_000,
  redisDownMs: 20_000,
  redisPausedMs: 20_000,
  rateLimitedMs: 30_000,
  retryAfterS: 12,
  bursts: 3,
  burstMs: 3_000,
  burstGapMs: 3_000,
  stallMs: 15_000,
  settleMs: 10_000,
  recoveryBoundMs: 20_000,
};

export const QUICK_TIMINGS: FaultTimings = {
  baselineMs: 3_000,
  leadMs: 1_000,
  natsDownMs: 6_000,
  postgresDownMs: 6_000,
  redisDownMs: 4_000,
  redisPausedMs: 4_000,
  rateLimitedMs: 16_000,
  retryAfterS: 11,
  bursts: 2,
  burstMs: 1_500,
  burstGapMs: 1_500,
  stallMs: 4_000,
  settleMs: 5_000,
  recoveryBoundMs: 20_000,
};

export interface FaultsOptions {
  faults: FaultName[];
  concurrency: number;
  timings: FaultTimings;
  /** A request still running after this long is hung. */
  deadlineMs: number;
  /** A client's pause after a failed request before its next (see FaultLoadJob.errorPauseMs). */
  errorPauseMs: number;
  /** The providers' `stream_idle_timeout_ms` for the run: the stall fault's bound. */
  streamIdleTimeoutMs: number;
  firstTokenTimeoutMs: number;
  upstream: FakeUpstreamOptions;
  /** Where the captured output of every mesh process goes (a temporary folder when unset). */
  logDir?: string;
  /** Progress lines (stderr in the command). */
  progress: (line: string) => void;
}

export const DEFAULT_FAULTS_OPTIONS: Omit<FaultsOptions, "progress"> = {
  faults: [...FAULTS],
  concurrency: 200,
  timings: FULL_TIMINGS,
  deadlineMs: 15_000,
  errorPauseMs: 250,
  streamIdleTimeoutMs: 2_000,
  firstTokenTimeoutMs: 5_000,
  upstream: DEFAULT_FAKE_UPSTREAM,
};

/** One check a fault must pass. */
export interface FaultCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** What one fault did to the requests that started in its window. */
export interface FaultResult {
  fault: FaultName | "baseline";
  what: string;
  requests: number;
  served: number;
  /** HTTP error status with the OpenAI envelope. */
  httpErrors: number;
  /** SSE error event, no [DONE]. */
  streamErrors: number;
  hung: number;
  /** [DONE] after an incomplete answer or an error event. */
  halfAnswerDone: number;
  /** Failures that were neither clean nor hung (reset connection, a stream cut with no error event, ...). */
  unclean: number;
  errorKinds: Record<string, number>;
  /** Window, fault start and fault end, ms since the window opened. */
  windowMs: number;
  faultAtMs: number;
  clearedAtMs: number;
  /** From the fault's end (the kill, for a kill) to the first answer after the last failure; null when service did not come back. */
  recoveredMs: number | null;
  /** Fault-specific observations (restart time, resync time, requests the upstream saw, ...). */
  notes: Record<string, unknown>;
  checks: FaultCheck[];
  ok: boolean;
}

export interface FaultsReport {
  date: string;
  machine: string;
  options: Omit<FaultsOptions, "progress">;
  results: FaultResult[];
  /** Lines in the captured mesh output that tell of a crash, an exit or an unhandled rejection. */
  trouble: string[];
  ok: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the fault suite: the five-process mesh as `switchyard start` runs it (mesh mTLS on, a NATS
 * and, for the Redis faults, a Redis of its own, two OpenAI-compatible upstreams whose behaviour
 * is switched at run time), a closed-loop streamed load that never stops, and one fault after
 * another, each in its own window of requests. Every request is judged as a client would judge it.
 */
export async function runFaults(o: FaultsOptions): Promise<FaultsReport> {
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, ${process.platform}, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")} at start`;
  const needsRedis = o.faults.some((f) => f.startsWith("redis-"));
  const cleanups: (() => Promise<void>)[] = [];
  const results: FaultResult[] = [];
  let trouble: string[] = [];
  const between: RequestRecord[] = [];
  const betweenKinds: Record<string, number> = {};
  /** Every request the load sent, in any window or between: each must be on the books once. */
  let sent = 0;
  const runStart = Date.now();
  try {
    const nats = await NatsServer.start();
    cleanups.push(() => nats.close());
    const redis = needsRedis ? await RedisServer.start() : undefined;
    if (redis) cleanups.push(() => redis.close());
    // The Postgres fault: the ledger on a database of the run's own, behind a relay the suite cuts.
    const postgres = o.faults.includes("postgres-down") ? await PostgresUnderTest.start() : undefined;
    if (postgres) cleanups.push(() => postgres.close());
    const upstreams = await Upstreams.start(o.upstream, 2);
    cleanups.push(() => upstreams.close());
    const [primary] = upstreams.controls as [UpstreamControl, UpstreamControl];
    const mesh = await MeshUnderTest.start(
      {
        upstreams: upstreams.controls.map((c) => `${c.baseUrl}/v1`),
        natsUrl: nats.url,
        ...(redis ? { redisUrl: redis.url } : {}),
        ...(postgres ? { databaseUrl: postgres.url } : {}),
        streamIdleTimeoutMs: o.streamIdleTimeoutMs,
        firstTokenTimeoutMs: o.firstTokenTimeoutMs,
      },
      o.logDir,
    );
    cleanups.push(() => mesh.stop());
    o.progress(`mesh ready (${o.concurrency} streams in flight from now on); output of every process in ${mesh.logFile}`);
    const load = LoadProcess.start();
    cleanups.push(() => load.close());
    const expectText = Array.from({ length: o.upstream.chunks }, (_, i) => `tok${i} `).join("");
    const t = o.timings;

    let gap: string | undefined;
    const tallyBetween = (p: PhaseRecords) => {
      sent += p.records.length;
      for (const r of p.records) if (r[2] === Outcome.hung || r[2] === Outcome.halfAnswerDone || r[2] === Outcome.unclean) between.push(r);
      for (const [k, n] of Object.entries(p.kinds)) betweenKinds[k] = (betweenKinds[k] ?? 0) + n;
    };

    /** Opens a window, runs `inject` (which returns when the fault is over), watches the settle period, judges. */
    const window = async (
      fault: FaultResult["fault"],
      what: string,
      inject: (mark: { faultAt: (at?: number) => void; clearedAt: (at?: number) => void; notes: Record<string, unknown>; checks: FaultCheck[] }) => Promise<void>,
      inspect?: (records: RequestRecord[]) => void,
    ): Promise<FaultResult> => {
      const opened = Date.now();
      if (results.length === 0 && fault === "baseline") {
        await load.run({ url: mesh.openaiUrl, model: "switchyard/auto", concurrency: o.concurrency, deadlineMs: o.deadlineMs, errorPauseMs: o.errorPauseMs, expectText }, fault);
      } else {
        await load.phase(fault);
      }
      if (gap) tallyBetween(await load.collect(gap));
      let faultAt = opened;
      let clearedAt = opened;
      const notes: Record<string, unknown> = {};
      const checks: FaultCheck[] = [];
      o.progress(`${fault}: ${what}`);
      await inject({ faultAt: (at = Date.now()) => (faultAt = at), clearedAt: (at = Date.now()) => (clearedAt = at), notes, checks });
      if (fault !== "baseline") await sleep(t.settleMs);
      const closed = Date.now();
      // Between two windows (while this one's last requests end) requests belong to no fault;
      // they are still judged: none may hang or end half.
      gap = `after ${fault}`;
      await load.phase(gap);
      const phase = await load.collect(fault);
      sent += phase.records.length;
      inspect?.(phase.records);
      const result = judge(fault, what, phase, opened, closed, faultAt, clearedAt, t, notes, checks);
      results.push(result);
      o.progress(`${fault}: ${summary(result)}`);
      return result;
    };

    await window("baseline", "no fault", async () => {
      await sleep(t.baselineMs);
    });

    for (const fault of o.faults) {
      switch (fault) {
        case "kill-classifier":
        case "kill-policy":
        case "kill-cache":
        case "kill-provider":
        case "kill-ledger": {
          const name = fault.slice(5) as Exclude<ServiceName, "gateway">;
          await window(fault, `SIGKILL the ${name} process; the supervisor restarts it`, async (m) => {
            await sleep(t.leadMs);
            m.faultAt();
            const killed = mesh.kill(name);
            m.clearedAt();
            const back = await serviceBack(mesh, name, killed, t.recoveryBoundMs + 30_000);
            m.notes.restartedInMs = back;
            m.checks.push({ name: "restarted by the supervisor", ok: back !== null, detail: back === null ? "no new process serving" : `new process ready ${back} ms after the kill` });
          });
          break;
        }
        case "postgres-down":
          await window(fault, `the ledger's Postgres unreachable for ${t.postgresDownMs / 1000} s (connections reset, new ones refused), then back`, async (m) => {
            await sleep(t.leadMs);
            m.faultAt();
            postgres!.down();
            await sleep(Math.min(2_000, t.postgresDownMs / 2));
            m.notes.ledgerDuringOutage = (await mesh.readiness("ledger"))?.checks.database;
            await sleep(t.postgresDownMs - Math.min(2_000, t.postgresDownMs / 2));
            postgres!.restore();
            const cleared = Date.now();
            m.clearedAt(cleared);
            const back = await waitFor("the ledger's database back", async () => /ok/.test(String((await mesh.readiness("ledger"))?.checks.database ?? "")), 30_000, 200).then(
              () => Date.now() - cleared,
              () => null,
            );
            m.checks.push({ name: "the ledger says its database is down while it is", ok: /down/.test(String(m.notes.ledgerDuringOutage ?? "")), detail: String(m.notes.ledgerDuringOutage) });
            m.checks.push({ name: "the ledger writes again", ok: back !== null, detail: back === null ? "its readiness never said the database is ok" : `database ok ${back} ms after it came back` });
          });
          break;
        case "nats-down":
          await window(fault, `nats-server stopped for ${t.natsDownMs / 1000} s, then started again on the same port`, async (m) => {
            await sleep(t.leadMs);
            m.faultAt();
            await nats.halt();
            await sleep(t.natsDownMs);
            const during = await natsStates(mesh);
            m.notes.natsDuringOutage = during;
            await nats.resume();
            m.clearedAt();
            const resync = await timeUntil(async () => Object.values(await natsStates(mesh)).every((s) => s === "connected"), t.recoveryBoundMs + 30_000);
            m.notes.reconnectedInMs = resync;
            m.notes.natsAfter = await natsStates(mesh);
            m.checks.push({
              name: "services say so while NATS is down",
              ok: Object.values(during).length > 0 && Object.values(during).every((s) => s !== "connected"),
              detail: JSON.stringify(during),
            });
            m.checks.push({ name: "every service reconnects", ok: resync !== null, detail: resync === null ? JSON.stringify(m.notes.natsAfter) : `all connected ${resync} ms after NATS came back` });
          });
          break;
        case "redis-down":
        case "redis-sigstop": {
          const paused = fault === "redis-sigstop";
          await window(
            fault,
            paused ? `redis-server SIGSTOPped for ${t.redisPausedMs / 1000} s (connections accepted, nothing answered), then SIGCONT` : `redis-server stopped for ${t.redisDownMs / 1000} s, then started again (empty)`,
            async (m) => {
              await sleep(t.leadMs);
              m.faultAt();
              if (paused) redis!.pause();
              else await redis!.halt();
              await sleep(paused ? t.redisPausedMs : t.redisDownMs);
              m.notes.cacheDuringOutage = (await mesh.readiness("cache"))?.checks.redis;
              if (paused) redis!.unpause();
              else await redis!.resume();
              m.clearedAt();
              const back = await timeUntil(async () => (await mesh.readiness("cache"))?.checks.redis === "ok", t.recoveryBoundMs + 30_000);
              m.notes.cacheBackendOkInMs = back;
              // A stopped Redis closes the connection, which the cache reports; a frozen one keeps it open.
              if (!paused) m.checks.push({ name: "the cache says Redis is degraded while it is", ok: String(m.notes.cacheDuringOutage ?? "").startsWith("degraded"), detail: String(m.notes.cacheDuringOutage) });
              m.checks.push({ name: "the cache uses Redis again", ok: back !== null, detail: back === null ? "cache readiness never said redis ok" : `redis ok ${back} ms after it came back` });
            },
          );
          break;
        }
        case "upstream-429":
          await window(fault, `the primary upstream answers 429 with retry-after: ${t.retryAfterS} for ${t.rateLimitedMs / 1000} s (fallback: the second upstream)`, async (m) => {
            await sleep(t.leadMs);
            await primary.reset();
            m.faultAt();
            await primary.set({ mode: "status", status: 429, retryAfterS: t.retryAfterS });
            await sleep(t.rateLimitedMs);
            await primary.set({ mode: "ok" });
            m.clearedAt();
            const seen = await primary.stats();
            const bursts = burstsOf(seen.errorArrivals, 1_000);
            const gaps = bursts.slice(1).map((b, i) => b.start - bursts[i]!.start);
            const floor = t.retryAfterS * 1000 - 250;
            m.notes.rateLimited = { requestsAnswered429: seen.errorArrivals.length, bursts: bursts.map((b) => ({ atMs: b.start - seen.errorArrivals[0]!, requests: b.count })), gapsMs: gaps };
            m.checks.push({
              name: "retry-after honoured",
              ok: bursts.length > 0 && gaps.every((g) => g >= floor),
              detail:
                bursts.length === 0
                  ? "the upstream saw no request in 429 mode"
                  : `${seen.errorArrivals.length} requests reached the 429 upstream in ${bursts.length} burst(s)${gaps.length ? `, ${gaps.map((g) => `${g} ms`).join(", ")} apart` : ""} (retry-after ${t.retryAfterS} s)`,
            });
          });
          break;
        case "upstream-500-bursts":
          await window(fault, `the primary upstream answers 500 in ${t.bursts} bursts of ${t.burstMs / 1000} s, ${t.burstGapMs / 1000} s apart`, async (m) => {
            await sleep(t.leadMs);
            await primary.reset();
            m.faultAt();
            for (let i = 0; i < t.bursts; i++) {
              await primary.set({ mode: "status", status: 500 });
              await sleep(t.burstMs);
              await primary.set({ mode: "ok" });
              if (i < t.bursts - 1) await sleep(t.burstGapMs);
            }
            m.clearedAt();
            const seen = await primary.stats();
            m.notes.upstreamAnswered500 = seen.errorArrivals.length;
            m.checks.push({ name: "the fault reached the upstream", ok: seen.errorArrivals.length > 0, detail: `${seen.errorArrivals.length} requests answered 500` });
          });
          break;
        case "upstream-stall": {
          let stalledErrors = 0;
          let worstStallMs = 0;
          await window(
            fault,
            `the primary upstream sends 3 chunks then goes silent, for ${t.stallMs / 1000} s (stream_idle_timeout_ms ${o.streamIdleTimeoutMs})`,
            async (m) => {
              await sleep(t.leadMs);
              await primary.reset();
              // A fault just before (500 bursts) may have opened the primary's circuit: routing
              // skips it for the circuit's cool-down, and a stall nobody is routed to proves nothing.
              // A single request is not enough (a half-open circuit lets a probe through and may
              // open again): wait until routing sends it a steady share of the load.
              const primaryBackMs = await timeUntil(async () => (await primary.stats()).requests >= PRIMARY_TRAFFIC_BEFORE_STALL, t.recoveryBoundMs);
              m.notes.primaryTakingTrafficAfterMs = primaryBackMs;
              m.faultAt();
              await primary.set({ mode: "stall", afterChunks: 3 });
              await sleep(t.stallMs);
              await primary.set({ mode: "ok" });
              m.clearedAt();
              m.notes.upstreamStalled = (await primary.stats()).byMode.stall ?? 0;
            },
            (records) => {
              for (const r of records) {
                if (r[2] !== Outcome.streamError) continue;
                stalledErrors++;
                worstStallMs = Math.max(worstStallMs, r[3]);
              }
            },
          );
          const result = results.at(-1)!;
          const bound = o.streamIdleTimeoutMs + 1_000;
          result.notes.streamErrors = stalledErrors;
          result.notes.worstSilenceBeforeErrorMs = worstStallMs;
          result.checks.push({
            name: "a stalled stream ends with an error event within the idle timeout",
            ok: stalledErrors > 0 && worstStallMs <= bound,
            detail:
              stalledErrors === 0
                ? `no stream ended with an error event: the stall never reached a client (${result.notes.primaryTakingTrafficAfterMs === null ? "routing never sent the primary traffic before the stall" : `${String(result.notes.upstreamStalled)} requests reached the stalled upstream`})`
                : `${stalledErrors} streams ended with an error event, at most ${worstStallMs} ms after their last data (bound ${bound} ms)`,
          });
          result.ok = result.checks.every((c) => c.ok);
          break;
        }
      }
    }
    await load.stop();
    if (gap) tallyBetween(await load.collect(gap));
    const kills = o.faults.filter((f) => f.startsWith("kill-")).length;
    trouble = mesh.trouble(kills);
    // The books: every request sent, whatever happened to it, is in the ledger exactly once.
    const booked = await bookedRequests(mesh.grpcUrl, runStart, sent, 60_000);
    o.progress(`books: ${booked} of ${sent} requests in the ledger`);
    if (booked !== sent) trouble.push(`the ledger holds ${booked} usage records for ${sent} requests sent (every request must be on the books once)`);
    if (between.length > 0) {
      trouble.push(`${between.length} requests between fault windows hung, ended half with [DONE] or failed uncleanly: ${JSON.stringify(betweenKinds)}`);
    }
  } finally {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => o.progress(`cleanup: ${(err as Error).message}`));
  }
  const { progress: _, ...options } = o;
  return { date: new Date().toISOString(), machine, options, results, trouble, ok: results.every((r) => r.ok) && trouble.length === 0 };
}

/** Judges one window: counts by outcome, recovery, and the checks every fault must pass. */
function judge(
  fault: FaultResult["fault"],
  what: string,
  phase: PhaseRecords,
  opened: number,
  closed: number,
  faultAt: number,
  clearedAt: number,
  t: Pick<FaultTimings, "settleMs" | "recoveryBoundMs">,
  notes: Record<string, unknown>,
  checks: FaultCheck[],
): FaultResult {
  const count = (o: Outcome) => phase.records.filter((r) => r[2] === o).length;
  const bad = phase.records.filter((r) => r[2] !== Outcome.served);
  let recoveredMs: number | null = 0;
  if (bad.length > 0) {
    const lastBadStart = Math.max(...bad.map((r) => r[0]));
    const firstGoodAfter = Math.min(...phase.records.filter((r) => r[2] === Outcome.served && r[0] > lastBadStart).map((r) => r[1]));
    // Back only if the window's tail (the last part of the settle period) ran clean.
    const cleanTail = closed - lastBadStart >= Math.min(2_000, t.settleMs / 2);
    recoveredMs = Number.isFinite(firstGoodAfter) && cleanTail ? Math.max(0, firstGoodAfter - clearedAt) : null;
  }
  const served = count(Outcome.served);
  const r: FaultResult = {
    fault,
    what,
    requests: phase.records.length,
    served,
    httpErrors: count(Outcome.httpError),
    streamErrors: count(Outcome.streamError),
    hung: count(Outcome.hung),
    halfAnswerDone: count(Outcome.halfAnswerDone),
    unclean: count(Outcome.unclean),
    errorKinds: phase.kinds,
    windowMs: closed - opened,
    faultAtMs: faultAt - opened,
    clearedAtMs: clearedAt - opened,
    recoveredMs,
    notes,
    checks: [
      { name: "no request hung past its deadline", ok: count(Outcome.hung) === 0, detail: `${count(Outcome.hung)} hung` },
      { name: "no half answer followed by [DONE]", ok: count(Outcome.halfAnswerDone) === 0, detail: `${count(Outcome.halfAnswerDone)}` },
      { name: "every failure is a clean error", ok: count(Outcome.unclean) === 0, detail: `${count(Outcome.unclean)} unclean` },
      {
        name: fault === "baseline" ? "every request served" : `service back within ${t.recoveryBoundMs} ms`,
        ok: fault === "baseline" ? bad.length === 0 && served > 0 : recoveredMs !== null && recoveredMs <= t.recoveryBoundMs && served > 0,
        detail: recoveredMs === null ? "failures until the end of the window" : `${recoveredMs} ms`,
      },
      ...checks,
    ],
    ok: false,
  };
  r.ok = r.checks.every((c) => c.ok);
  return r;
}

function summary(r: FaultResult): string {
  const failed = r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
  return `${r.served}/${r.requests} served, ${r.httpErrors + r.streamErrors} clean errors, ${r.hung} hung, ${r.halfAnswerDone} half+[DONE], ${r.unclean} unclean, recovered in ${r.recoveredMs ?? "-"} ms${failed.length ? ` — FAILED: ${failed.join("; ")}` : ""}`;
}

/** Waits for a new process of `name` (not `killedPid`) that reports ready; ms after the kill, or null. */
async function serviceBack(mesh: MeshUnderTest, name: ServiceName, killedPid: number, timeoutMs: number): Promise<number | null> {
  const started = Date.now();
  try {
    await waitFor(`${name} restarted`, async () => {
      const pid = mesh.pids()[name];
      return pid !== undefined && pid !== killedPid && (await mesh.readiness(name))?.ready === true;
    }, timeoutMs, 25);
    return Date.now() - started;
  } catch {
    return null;
  }
}

/** Requests the primary upstream must have taken since its reset before the stall is set. */
const PRIMARY_TRAFFIC_BEFORE_STALL = 50;

async function timeUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<number | null> {
  const started = Date.now();
  try {
    await waitFor("condition", check, timeoutMs, 50);
    return Date.now() - started;
  } catch {
    return null;
  }
}

/** `checks.nats` of every service whose readiness has one. */
async function natsStates(mesh: MeshUnderTest): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of ["gateway", "classifier", "policy", "cache", "provider"] as const) {
    const nats = (await mesh.readiness(name))?.checks.nats;
    if (nats !== undefined && nats !== "disabled") out[name] = nats;
  }
  return out;
}

/** Groups sorted arrival times into bursts: a gap of more than `gapMs` starts a new one. */
export function burstsOf(arrivals: number[], gapMs: number): { start: number; end: number; count: number }[] {
  const out: { start: number; end: number; count: number }[] = [];
  for (const at of [...arrivals].sort((a, b) => a - b)) {
    const last = out.at(-1);
    if (last && at - last.end <= gapMs) {
      last.end = at;
      last.count++;
    } else out.push({ start: at, end: at, count: 1 });
  }
  return out;
}

/** The table a person reads. */
export function faultTable(report: FaultsReport): string {
  const head = ["fault", "requests", "served", "clean errors", "hung", "half+[DONE]", "unclean", "recovered in", "checks"];
  const rows = report.results.map((r) => [
    r.fault,
    String(r.requests),
    String(r.served),
    `${r.httpErrors + r.streamErrors}${r.streamErrors ? ` (${r.streamErrors} in-stream)` : ""}`,
    String(r.hung),
    String(r.halfAnswerDone),
    String(r.unclean),
    r.recoveredMs === null ? "never" : `${r.recoveredMs} ms`,
    r.ok ? "ok" : "FAILED",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const out = [line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
  out.push("");
  for (const r of report.results) {
    out.push(`${r.fault}: ${r.what}`);
    for (const c of r.checks) out.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
    const kinds = Object.entries(r.errorKinds).sort((a, b) => b[1] - a[1]);
    if (kinds.length) out.push(`  failures: ${kinds.map(([k, n]) => `${n} × ${k}`).join("; ")}`);
  }
  if (report.trouble.length) {
    out.push("", "crashes or unhandled errors in the mesh's output:");
    for (const l of report.trouble.slice(0, 20)) out.push(`  ${l}`);
  }
  return out.join("\n") + "\n";
}

/** Writes the JSON report (creating its folder). */
export function writeFaultsReport(report: FaultsReport, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(report, null, 2) + "\n");
}

/**
 * Requests in the ledger since `since`, asked through the gateway's admin API until they reach
 * `expected` or `timeoutMs` passes (records arrive after their answers, and after any outage).
 */
async function bookedRequests(gatewayUrl: string, since: number, expected: number, timeoutMs: number): Promise<number> {
  const connection = createServiceClient(admin.AdminService, gatewayUrl);
  const deadline = Date.now() + timeoutMs;
  let seen = -1;
  try {
    while (Date.now() < deadline) {
      try {
        const report = await connection.client.usage({ sinceUnixMs: BigInt(since - 60_000), untilUnixMs: BigInt(Date.now() + 60_000) }, { timeoutMs: 10_000 });
        seen = Number(report.totals?.requests ?? 0n);
        if (seen >= expected) return seen;
      } catch {
        // the ledger is catching up, or restarting
      }
      await sleep(500);
    }
    return seen;
  } finally {
    connection.close();
  }
}
