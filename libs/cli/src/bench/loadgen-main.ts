// The load generator's own process: a benchmark's client should not share an event loop with
// what it measures. Receives LoadJob messages over IPC and answers each with a LoadResult.
import { runLoad, type LoadJob } from "./loadgen.js";

process.on("message", (job: LoadJob) => {
  runLoad(job).then(
    (result) => process.send!({ ok: true, result }),
    (err: unknown) => process.send!({ ok: false, error: String((err as Error).message ?? err) }),
  );
});
process.on("disconnect", () => process.exit(0));
