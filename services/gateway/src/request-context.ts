import { randomBytes } from "node:crypto";

/** Identity of one request: its id and the W3C trace context it answers with. */
export interface RequestIdentity {
  requestId: string;
  traceparent: string;
}

/**
 * A new request id, and a traceparent that continues the caller's trace when it sent a valid one
 * (same trace id, our own span id) or starts a new trace.
 */
export function newRequestIdentity(incomingTraceparent?: string): RequestIdentity {
  const m = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/.exec(incomingTraceparent ?? "");
  const traceId = m && m[1] !== "0".repeat(32) ? m[1]! : randomBytes(16).toString("hex");
  const flags = m ? m[2]! : "01";
  return { requestId: `req_${randomBytes(12).toString("hex")}`, traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-${flags}` };
}
