import { DEFAULT_SOAK_OPTIONS, runSoak, soakTable, writeSoakReport, type SoakOptions } from "./soak.js";
import { DEFAULT_FAULTS_OPTIONS, FAULTS, faultTable, QUICK_TIMINGS, runFaults, writeFaultsReport, type FaultName, type FaultsOptions } from "./suite.js";

const FAULTS_USAGE = `usage: switchyard faults [options]     faults injected while streams are in flight

Runs the five-process mesh as \`switchyard start\` does (mesh mTLS on), with a nats-server and a
redis-server of its own and two OpenAI-compatible upstreams, under a closed-loop streamed load, and
injects one fault after another. Per fault: requests served, failed with a clean error (an HTTP
error with the OpenAI envelope, or an SSE error event with no [DONE]), hung past the deadline
(must be 0), half answers followed by [DONE] (must be 0), and how long until service was back.

options:
  --quick                  seconds per fault instead of the full durations (NATS down 6 s, not 60 s)
  --concurrency 200        streams in flight
  --faults a,b,...         a subset, in this order (${FAULTS.join(", ")})
  --deadline-ms 15000      a request still running after this long is hung
  --error-pause-ms 250     a client's pause after a failed request (0: a retry storm)
  --idle-timeout-ms 2000   the providers' stream_idle_timeout_ms (the stall fault's bound)
  --recovery-s 20          service must be back this soon after a fault is over (after a kill: the kill)
  --logs DIR               keep the output of every mesh process in DIR/mesh.log
  --out .bench/faults.json`;

/** `switchyard faults [--quick]`: the fault suite; prints the table, writes the JSON; exit 1 when a check fails. */
export async function faultsCommand(argv: string[]): Promise<number> {
  const o: FaultsOptions = { ...DEFAULT_FAULTS_OPTIONS, progress: (line) => process.stderr.write(`${line}\n`) };
  let out = ".bench/faults.json";
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const take = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const positive = () => {
      const n = Number(take());
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a whole number of at least 1`);
      return n;
    };
    switch (flag) {
      case "--help":
      case "-h":
        process.stdout.write(FAULTS_USAGE + "\n");
        return 0;
      case "--quick":
        o.timings = { ...QUICK_TIMINGS, recoveryBoundMs: o.timings.recoveryBoundMs };
        break;
      case "--concurrency":
        o.concurrency = positive();
        break;
      case "--faults": {
        const list = take().split(",").map((s) => s.trim()).filter(Boolean);
        for (const f of list) if (!(FAULTS as readonly string[]).includes(f)) throw new Error(`unknown fault "${f}" (faults: ${FAULTS.join(", ")})`);
        o.faults = list as FaultName[];
        break;
      }
      case "--deadline-ms":
        o.deadlineMs = positive();
        break;
      case "--error-pause-ms": {
        const n = Number(take());
        if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} needs a whole number of ms`);
        o.errorPauseMs = n;
        break;
      }
      case "--idle-timeout-ms":
        o.streamIdleTimeoutMs = positive();
        break;
      case "--recovery-s":
        o.timings = { ...o.timings, recoveryBoundMs: positive() * 1000 };
        break;
      case "--logs":
        o.logDir = take();
        break;
      case "--out":
        out = take();
        break;
      default:
        throw new Error(`bad option "${flag}"\n${FAULTS_USAGE}`);
    }
  }
  const report = await runFaults(o);
  process.stdout.write(
    `switchyard faults: ${o.concurrency} streams in flight (closed loop, ${o.errorPauseMs} ms pause after a failure), ${o.timings.natsDownMs === QUICK_TIMINGS.natsDownMs ? "quick" : "full"} durations, recovery bound ${o.timings.recoveryBoundMs} ms\nmachine: ${report.machine}\n\n`,
  );
  process.stdout.write(faultTable(report));
  writeFaultsReport(report, out);
  process.stdout.write(`\n${report.ok ? "all checks passed" : "SOME CHECKS FAILED"}; written to ${out}\n`);
  return report.ok ? 0 : 1;
}

const SOAK_USAGE = `usage: switchyard soak [options]       steady streamed load; RSS, fds and sockets of every process

Runs the five-process mesh as \`switchyard start\` does under a steady closed-loop streamed load and
samples every process's RSS, open file descriptors and TCP sockets from /proc. Every prompt is
unique; the cache is bounded small, so it fills during the warm-up and then evicts. Checks: RSS of
every mesh process grows at most 10 % from the first to the last quarter, no growing fd or socket count,
no restart, no crash or unhandled rejection in any process's output, every request served.

options:
  --minutes 10             measured time (after the warm-up)
  --warmup-s 60            load before the measured part (not in the first quarter)
  --concurrency 100        streams in flight
  --sample-s 5             seconds between samples
  --logs DIR               keep the output of every mesh process in DIR/mesh.log
  --out .bench/soak.json`;

/** `switchyard soak [--minutes 10] [--concurrency N]`: prints the table, writes the JSON; exit 1 when a check fails. */
export async function soakCommand(argv: string[]): Promise<number> {
  const o: SoakOptions = { ...DEFAULT_SOAK_OPTIONS, progress: (line) => process.stderr.write(`${line}\n`) };
  let out = ".bench/soak.json";
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const number = () => {
      const v = argv[++i];
      const n = Number(v);
      if (v === undefined || !Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number`);
      return n;
    };
    switch (flag) {
      case "--help":
      case "-h":
        process.stdout.write(SOAK_USAGE + "\n");
        return 0;
      case "--minutes":
        o.durationMs = Math.round(number() * 60_000);
        break;
      case "--warmup-s":
        o.warmupMs = Math.round(number() * 1000);
        break;
      case "--concurrency":
        o.concurrency = Math.max(1, Math.round(number()));
        break;
      case "--sample-s":
        o.sampleEveryMs = Math.round(number() * 1000);
        break;
      case "--logs": {
        const v = argv[++i];
        if (!v) throw new Error("--logs needs a folder");
        o.logDir = v;
        break;
      }
      case "--out": {
        const v = argv[++i];
        if (!v) throw new Error("--out needs a file");
        out = v;
        break;
      }
      default:
        throw new Error(`bad option "${flag}"\n${SOAK_USAGE}`);
    }
  }
  const report = await runSoak(o);
  process.stdout.write(
    `switchyard soak: ${o.concurrency} streams in flight for ${o.durationMs / 60_000} min after ${o.warmupMs / 1000} s of warm-up, sampled every ${o.sampleEveryMs / 1000} s; machine: ${report.machine}\n\n`,
  );
  process.stdout.write(soakTable(report));
  writeSoakReport(report, out);
  process.stdout.write(`\n${report.ok ? "all checks passed" : "SOME CHECKS FAILED"}; written to ${out}\n`);
  return report.ok ? 0 : 1;
}
