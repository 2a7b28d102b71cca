import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import ts from "typescript";
import { parseAllDocuments } from "yaml";
import { ROOT } from "./services.js";

/** A Kubernetes object as rendered (plain JSON). */
export type KubeObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } & Record<string, any>;

/** `kubectl kustomize <dir>` (relative to the repository root, or absolute), offline. @throws with kubectl's message when it does not build. */
export async function kustomize(dir: string): Promise<KubeObject[]> {
  try {
    const { stdout } = await promisify(execFile)("kubectl", ["kustomize", resolve(ROOT, dir)], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    return parseObjects(stdout);
  } catch (err) {
    throw new Error(`kubectl kustomize ${dir} failed: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }
}

/** Multi-document YAML to objects, empty documents dropped. */
export function parseObjects(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null);
}

const require = createRequire(import.meta.url);
const MODELS = dirname(require.resolve("kubernetes-models/package.json"));

/** The kubernetes-models module folder for an apiVersion: "v1" → v1, "apps/v1" → apps/v1. */
function modelFolder(apiVersion: string): string {
  return join(MODELS, apiVersion);
}

/**
 * Validates one object with kubernetes-models: constructs the model class of its apiVersion/kind
 * and calls `.validate()` (the OpenAPI schema of that Kubernetes version: types, enums, required
 * fields). Returns the problems, each naming the object and the path.
 */
export function validateModel(obj: KubeObject): string[] {
  const id = `${obj.kind}/${obj.metadata?.name}`;
  let Model: (new (data: unknown) => { validate(): void }) | undefined;
  try {
    const mod = require(`kubernetes-models/${obj.apiVersion}`) as Record<string, any>;
    Model = mod[obj.kind];
  } catch {
    /* unknown group/version: reported below */
  }
  if (!Model) return [`${id}: no Kubernetes schema for apiVersion ${obj.apiVersion}, kind ${obj.kind}`];
  // Secret data as kustomize writes it: base64 in a literal block, one line break every 70
  // characters, which the API server's base64 decoding skips (the "byte" format does not).
  if (obj.kind === "Secret" && obj.data) obj = { ...obj, data: Object.fromEntries(Object.entries(obj.data).map(([k, v]) => [k, String(v).replace(/\s+/g, "")])) };
  try {
    new Model(obj).validate();
    return [];
  } catch (err) {
    const errors = (err as { errors?: { instancePath: string; message?: string }[] }).errors;
    return errors?.map((e) => `${id}: ${e.instancePath || "/"} ${e.message}`) ?? [`${id}: ${(err as Error).message}`];
  }
}

/**
 * The unknown-key check that `.validate()` does not do: kubernetes-models' schemas allow extra
 * properties, and so does the API server unless asked for strict field validation — a misspelled
 * `contianers` or `readinessprobe` would be dropped without a word and the pod would run without
 * it. We walk every object along the TypeScript interfaces that kubernetes-models generates from
 * the same OpenAPI definitions (read with the TypeScript compiler API), and report each key that is
 * not a field of its type, with the closest field name.
 */
export class StrictFieldChecker {
  private readonly program: ts.Program;
  private readonly checker: ts.TypeChecker;
  private readonly roots = new Map<string, ts.Type>();

  constructor(kinds: { apiVersion: string; kind: string }[]) {
    const unique = [...new Map(kinds.map((k) => [`${k.apiVersion}/${k.kind}`, k])).values()];
    const files = unique.map((k) => join(modelFolder(k.apiVersion), `${k.kind}.d.ts`));
    // lib.es5 only (for Array<T>): the default lib includes the DOM and triples the time.
    this.program = ts.createProgram(files, { noEmit: true, skipLibCheck: true, types: [], lib: ["lib.es5.d.ts"], moduleResolution: ts.ModuleResolutionKind.Node10 });
    this.checker = this.program.getTypeChecker();
    for (const [i, k] of unique.entries()) {
      const source = this.program.getSourceFile(files[i]!);
      const decl = source?.statements.find((s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === `I${k.kind}`);
      if (decl) this.roots.set(`${k.apiVersion}/${k.kind}`, this.checker.getTypeAtLocation(decl.name));
    }
  }

  /** Unknown keys of one object, as `Kind/name: path.to.key: unknown field (did you mean ...?)`. */
  check(obj: KubeObject): string[] {
    const root = this.roots.get(`${obj.apiVersion}/${obj.kind}`);
    const id = `${obj.kind}/${obj.metadata?.name}`;
    if (!root) return [`${id}: no Kubernetes type for ${obj.apiVersion} ${obj.kind}`];
    const problems: string[] = [];
    this.walk(root, obj, "", (path, key, known) => {
      const hint = closest(key, known);
      problems.push(`${id}: ${path ? `${path}.` : ""}${key}: unknown field${hint ? ` (did you mean "${hint}"?)` : ""}`);
    });
    return problems;
  }

  private walk(type: ts.Type, value: unknown, path: string, unknown: (path: string, key: string, known: string[]) => void): void {
    const t = this.checker.getNonNullableType(type);
    if (Array.isArray(value)) {
      const element = this.checker.getIndexTypeOfType(t, ts.IndexKind.Number);
      if (element) value.forEach((v, i) => this.walk(element, v, `${path}[${i}]`, unknown));
      return;
    }
    if (!value || typeof value !== "object") return;
    // Unions (IntOrString, ...): the object-shaped member.
    const candidates = t.isUnion() ? t.types.filter((m) => m.flags & ts.TypeFlags.Object) : [t];
    const objectType = candidates[0];
    if (!objectType) return;
    const properties = this.checker.getPropertiesOfType(objectType);
    const mapValues = this.checker.getIndexTypeOfType(objectType, ts.IndexKind.String);
    const byName = new Map(properties.map((p) => [p.name, p]));
    for (const [key, v] of Object.entries(value)) {
      const prop = byName.get(key);
      const at = path ? `${path}.${key}` : key;
      if (prop) this.walk(this.checker.getTypeOfSymbol(prop), v, at, unknown);
      else if (mapValues) this.walk(mapValues, v, at, unknown);
      else unknown(path, key, [...byName.keys()]);
    }
  }
}

/** The known name closest to a misspelled one (edit distance at most 3), if any. */
function closest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 4;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}
