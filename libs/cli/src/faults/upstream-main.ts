// Switchable upstreams in their own process (see upstream.ts), so that they do not share an event
// loop with the load generator or the suite. argv: JSON FakeUpstreamOptions, then how many.
// Sends {"ports": [...]} on its IPC channel once every one listens.
import type { FakeUpstreamOptions } from "../bench/fake-upstream.js";
import { listenFakeUpstream } from "../bench/fake-upstream.js";
import { createSwitchableUpstream } from "./upstream.js";

const options = JSON.parse(process.argv[2] ?? "{}") as FakeUpstreamOptions;
const count = Number(process.argv[3] ?? 1);
Promise.all(Array.from({ length: count }, () => listenFakeUpstream(createSwitchableUpstream(options)))).then((ports) => process.send!({ ports }));
process.on("disconnect", () => process.exit(0));
