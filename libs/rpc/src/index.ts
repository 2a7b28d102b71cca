export * from "./client.js";
export * from "./health.js";
export * from "./server.js";
export * from "./shutdown.js";
export * from "./bootstrap.js";
export * from "./tracing.js";
