// The fake upstream in its own process (see fake-upstream.ts). argv: JSON FakeUpstreamOptions, then the port (0 = any).
// Prints {"port": N} on its IPC channel once listening.
import { createFakeUpstream, listenFakeUpstream, type FakeUpstreamOptions } from "./fake-upstream.js";

const options = JSON.parse(process.argv[2] ?? "{}") as FakeUpstreamOptions;
const server = createFakeUpstream(options);
listenFakeUpstream(server, Number(process.argv[3] ?? 0)).then((port) => process.send!({ port }));
process.on("disconnect", () => process.exit(0));
