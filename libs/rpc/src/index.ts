export * from "./client.js";
export * from "./health.js";
export * from "./server.js";
export * from "./shutdown.js";
export * from "./bootstrap.js";
export * from "./tracing.js";
export { createLeanClient, H2Channel, LocalChannel, type ClientTls, type LeanChannel } from "./lean/client.js";
export { ProcedureTable, type Procedure } from "./lean/procedures.js";
export { LeanServer, type Authorizer } from "./lean/server.js";
