/** Log levels in increasing severity. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const SEVERITY: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Field names whose values never reach a log line. */
const SECRET_FIELD = /(^|_)(authorization|api[-_]?key|key|secret|token|password|cookie)$/i;

/** Structured JSON logger: one object a line on stdout (errors on stderr). */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds these fields to every line. */
  child(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  service: string;
  level?: LogLevel;
  /** Where lines go; defaults to stdout/stderr. */
  write?: (line: string, level: LogLevel) => void;
}

/** Creates a JSON logger for one service. Secret-looking fields are redacted. */
export function createLogger(options: LoggerOptions): Logger {
  const min = SEVERITY[options.level ?? "info"];
  const write =
    options.write ??
    ((line: string, level: LogLevel) => (level === "error" ? process.stderr : process.stdout).write(line + "\n"));
  const make = (base: Record<string, unknown>): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
      if (SEVERITY[level] < min) return;
      const record: Record<string, unknown> = { ts: new Date().toISOString(), level, service: options.service, msg };
      for (const source of [base, fields]) {
        if (!source) continue;
        for (const [k, v] of Object.entries(source)) record[k] = SECRET_FIELD.test(k) ? "[redacted]" : serialise(v);
      }
      write(JSON.stringify(record), level);
    };
    return {
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make({});
}

function serialise(value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (typeof value === "bigint") return Number(value);
  return value;
}
