import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Certificates shaped as cert-manager issues them for the chart (ECDSA P-256, PKCS#8 keys): a CA,
 * a server certificate for NATS (localhost), and one per identity with the URI SAN
 * spiffe://switchyard/<name>, CN <name> and server + client auth. Written to `dir` as
 * ca.crt, <name>.crt, <name>.key; made with the openssl command.
 */
export function issueCertificates(dir: string, identities: string[]): void {
  mkdirSync(dir, { recursive: true });
  const run = (...args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr || r.error?.message}`);
  };
  const key = (name: string) => run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`);
  key("ca");
  run("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=switchyard mesh CA", "-days", "1", "-out", "ca.crt");
  const issue = (name: string, san: string, usages: string) => {
    key(name);
    run("req", "-new", "-key", `${name}.key`, "-subj", `/CN=${name}`, "-out", `${name}.csr`);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usages}\nkeyUsage=digitalSignature\n`);
    run("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", `${name}.ext`, "-out", `${name}.crt`);
  };
  issue("nats", "DNS:nats,DNS:localhost,IP:127.0.0.1", "serverAuth");
  for (const name of identities) issue(name, `URI:spiffe://switchyard/${name},DNS:${name}`, "serverAuth,clientAuth");
}

/**
 * A certificate as cert-manager would issue it from a Certificate's spec (CN, URI and DNS SANs,
 * extended key usages), signed by the CA in `dir` (made by `issueCertificates`): <file>.crt/.key.
 */
export function issueFromSpec(dir: string, file: string, spec: { commonName?: string; uris?: string[]; dnsNames?: string[]; usages?: string[] }): void {
  const run = (...args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr || r.error?.message}`);
  };
  const san = [...(spec.uris ?? []).map((u) => `URI:${u}`), ...(spec.dnsNames ?? []).map((d) => `DNS:${d}`)].join(",");
  const eku = (spec.usages ?? []).flatMap((u) => (u === "server auth" ? ["serverAuth"] : u === "client auth" ? ["clientAuth"] : [])).join(",");
  run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${file}.key`);
  run("req", "-new", "-key", `${file}.key`, "-subj", `/CN=${spec.commonName ?? file}`, "-out", `${file}.csr`);
  writeFileSync(join(dir, `${file}.ext`), `${san ? `subjectAltName=${san}\n` : ""}${eku ? `extendedKeyUsage=${eku}\n` : ""}keyUsage=digitalSignature\n`);
  run("x509", "-req", "-in", `${file}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", `${file}.ext`, "-out", `${file}.crt`);
}

/** A nats-server started with a config file; `stop()` ends it. */
export interface NatsServer {
  port: number;
  process: ChildProcess;
  log: () => string;
  stop: () => Promise<void>;
}

/**
 * Starts nats-server with the chart's nats.conf, moved onto this machine: a free client port, no
 * monitoring port, storage and certificates in `dir`. Resolves when it accepts connections.
 */
export async function startNats(conf: string, dir: string, env: Record<string, string> = {}): Promise<NatsServer> {
  const port = await freePort();
  const local = conf
    .replace(/^port: 4222$/m, `port: ${port}\nhost: 127.0.0.1`)
    .replace(/^http_port: 8222$/m, "")
    .replace(/store_dir: \/data/, `store_dir: "${join(dir, "jetstream")}"`)
    .replace(/\/etc\/nats\/tls\/tls\.crt/, join(dir, "nats.crt"))
    .replace(/\/etc\/nats\/tls\/tls\.key/, join(dir, "nats.key"))
    .replace(/\/etc\/nats\/tls\/ca\.crt/, join(dir, "ca.crt"));
  const file = join(dir, "nats.conf");
  writeFileSync(file, local);
  let output = "";
  const child = spawn("nats-server", ["-c", file], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${output}`)), 10_000);
    const check = () => {
      if (/Server is ready/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", check);
    child.stderr.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (${code}):\n${output}`));
    });
  });
  return {
    port,
    process: child,
    log: () => output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
