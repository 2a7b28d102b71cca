export * from "./cost.js";
export * from "./tokens.js";
