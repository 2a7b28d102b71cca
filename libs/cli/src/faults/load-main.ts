// The fault suite's load generator in its own process (see load.ts): clients should not share an
// event loop with the suite that kills and restarts things. IPC requests {id, op, ...} are
// answered {id, ok, result | error}.
import { FaultLoad, type FaultLoadJob } from "./load.js";

type Request = { id: number } & ({ op: "start"; job: FaultLoadJob; phase: string } | { op: "phase"; phase: string } | { op: "collect"; phase: string } | { op: "stop" });

const load = new FaultLoad();

process.on("message", (m: Request) => {
  const run = async (): Promise<unknown> => {
    switch (m.op) {
      case "start":
        return load.start(m.job, m.phase);
      case "phase":
        return load.setPhase(m.phase);
      case "collect":
        return load.collect(m.phase);
      case "stop":
        return load.stop();
    }
  };
  run().then(
    (result) => process.send!({ id: m.id, ok: true, result }),
    (err: unknown) => process.send!({ id: m.id, ok: false, error: String((err as Error).message ?? err) }),
  );
});
process.on("disconnect", () => process.exit(0));
