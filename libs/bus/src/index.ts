export * from "./bus.js";
export * from "./keys.js";
