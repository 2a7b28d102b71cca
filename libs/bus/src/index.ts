export * from "./bus.js";
export * from "./keys.js";
export * from "./usage.js";
