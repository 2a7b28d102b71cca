import { loadRuntime, serve } from "@switchyard/rpc";
import { createLedgerService } from "./service.js";

const runtime = loadRuntime("ledger");
await serve({ runtime, port: runtime.config.ports.ledger, httpPort: runtime.config.ports.ledger_http, ...(await createLedgerService(runtime)) });
