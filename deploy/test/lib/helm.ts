import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { parse } from "yaml";
import { parseObjects, type KubeObject } from "./kube.js";
import { ROOT } from "./services.js";

export const CHART = join(ROOT, "deploy", "helm", "switchyard");

type Values = Record<string, unknown>;

/** Parses a values file; an empty document is `{}` as for Helm. */
export function loadValues(text: string): Values {
  return (parse(text, { uniqueKeys: true }) ?? {}) as Values;
}

/**
 * Helm's coalescing of a user values file over the chart's values.yaml: maps merge key by key,
 * anything else (lists included) replaces, and null deletes the key.
 */
export function coalesce(base: Values, override: Values): Values {
  const out: Values = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === null) delete out[key];
    else if (isMap(value) && isMap(out[key])) out[key] = coalesce(out[key] as Values, value);
    else out[key] = value;
  }
  return out;
}

function isMap(v: unknown): v is Values {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Validates values (already coalesced with values.yaml, as Helm does before it checks) against the
 * chart's values.schema.json, as `helm install/template/lint` would. The schema itself is compiled
 * in ajv's strict mode, so an unknown keyword in the schema is an error too.
 */
export function validateValues(schema: object, values: Values): string[] {
  let validate = compiled.get(schema);
  if (!validate) compiled.set(schema, (validate = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true }).compile(schema)));
  if (validate(values)) return [];
  return (validate.errors ?? []).map(formatError);
}

const compiled = new WeakMap<object, ValidateFunction>();

function formatError(e: ErrorObject): string {
  const at = e.instancePath || "(top level)";
  if (e.keyword === "additionalProperties") return `${at}: unknown key "${(e.params as { additionalProperty: string }).additionalProperty}"`;
  return `${at}: ${e.message}`;
}

export interface TemplateFile {
  name: string;
  text: string;
}

/** The chart's templates (*.yaml, *.tpl). */
export function readTemplates(): TemplateFile[] {
  const dir = join(CHART, "templates");
  return readdirSync(dir)
    .filter((f) => /\.(ya?ml|tpl|txt)$/.test(f))
    .map((name) => ({ name, text: readFileSync(join(dir, name), "utf8") }));
}

/** Whether `path` (a.b.c) leads somewhere in `values`. */
function hasPath(values: unknown, path: string[]): boolean {
  let at: unknown = values;
  for (const key of path) {
    if (!isMap(at) || !(key in at)) return false;
    at = at[key];
  }
  return true;
}

/**
 * Every `.Values.a.b` the templates read must exist in values.yaml: Helm renders a missing path
 * as empty without a word, so a typo there ships a broken manifest. Inside the component template,
 * `$c.x` (a component merged over componentDefaults) must exist for every component, and
 * `$image.x` in `image`.
 */
export function checkTemplatePaths(templates: TemplateFile[], values: Values): string[] {
  const problems: string[] = [];
  const components = (values.components ?? {}) as Record<string, Values>;
  const defaults = (values.componentDefaults ?? {}) as Values;
  for (const t of templates) {
    for (const m of t.text.matchAll(/\.Values((?:\.[A-Za-z0-9_]+)+)/g)) {
      const path = m[1]!.slice(1).split(".");
      if (!hasPath(values, path)) problems.push(`${t.name}: .Values.${path.join(".")} is not in values.yaml`);
    }
    for (const m of t.text.matchAll(/\$c((?:\.[A-Za-z0-9_]+)+)/g)) {
      const path = m[1]!.slice(1).split(".");
      for (const [name, component] of Object.entries(components)) {
        if (!hasPath(defaults, path) && !hasPath(component, path)) {
          problems.push(`${t.name}: $c.${path.join(".")} is neither in componentDefaults nor in components.${name}`);
        }
      }
    }
    for (const m of t.text.matchAll(/\$image\.([A-Za-z0-9_]+)/g)) {
      if (!hasPath(values.image, [m[1]!])) problems.push(`${t.name}: $image.${m[1]} is not a key of image`);
    }
  }
  return problems;
}

/**
 * Every `{{ if }}`, `{{ range }}`, `{{ with }}` and `{{ define }}` has its `{{ end }}`: the most
 * common way a template breaks when edited. (Helm itself is not available to render the chart.)
 */
export function checkTemplateBlocks(templates: TemplateFile[]): string[] {
  const problems: string[] = [];
  for (const t of templates) {
    const text = t.text.replace(/\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g, "");
    let depth = 0;
    for (const m of text.matchAll(/\{\{-?\s*(if|range|with|define|block|end)\b/g)) {
      depth += m[1] === "end" ? -1 : 1;
      if (depth < 0) {
        problems.push(`${t.name}: {{ end }} without an opening block at offset ${m.index}`);
        depth = 0;
      }
    }
    if (depth > 0) problems.push(`${t.name}: ${depth} block(s) not closed with {{ end }}`);
  }
  return problems;
}

/** The namespace and release name the checks render the chart with. */
export const RELEASE = { name: "switchyard", namespace: "switchyard" } as const;

/**
 * `helm template` of the chart with `values` (merged over values.yaml by Helm itself, checked
 * against values.schema.json, templates executed). @throws with Helm's message when it fails.
 */
export async function helmTemplate(values: Values, chart = CHART): Promise<KubeObject[]> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-helm-"));
  try {
    const file = join(dir, "values.yaml");
    writeFileSync(file, JSON.stringify(values)); // JSON: Helm reads YAML 1.1, where a bare `off` is false
    const { stdout } = await promisify(execFile)("helm", ["template", RELEASE.name, chart, "--namespace", RELEASE.namespace, "--values", file], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    return parseObjects(stdout);
  } catch (err) {
    throw new Error(`helm template failed: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `helm lint` with `values`; the lint output when it fails. */
export async function helmLint(values: Values): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-helm-"));
  try {
    const file = join(dir, "values.yaml");
    writeFileSync(file, JSON.stringify(values)); // JSON: Helm reads YAML 1.1, where a bare `off` is false
    await promisify(execFile)("helm", ["lint", "--strict", CHART, "--namespace", RELEASE.namespace, "--values", file], { encoding: "utf8" });
    return [];
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return [`${e.stdout ?? ""}${e.stderr ?? ""}`.trim()];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The NOTES Helm prints after `helm install` with `values` (a client-only dry run: no cluster).
 * @throws with Helm's message when the chart does not render.
 */
export async function helmNotes(values: Values): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-helm-"));
  try {
    const file = join(dir, "values.yaml");
    writeFileSync(file, JSON.stringify(values));
    const { stdout } = await promisify(execFile)("helm", ["install", RELEASE.name, CHART, "--dry-run=client", "--namespace", RELEASE.namespace, "--values", file], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    const at = stdout.indexOf("\nNOTES:\n");
    if (at < 0) throw new Error("helm install --dry-run printed no NOTES");
    return stdout.slice(at + "\nNOTES:\n".length);
  } catch (err) {
    throw new Error(`helm install --dry-run failed: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
