export { main } from "./main.js";
export { Mesh, serviceEntry } from "./mesh.js";
export { planNats, type NatsPlan } from "./nats.js";
export { freePort, reachable } from "./ports.js";
