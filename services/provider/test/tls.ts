import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A self-signed certificate and its key (PEM), and a way to delete their folder. */
export interface Certificate {
  key: string;
  cert: string;
  remove(): void;
}

/** A self-signed P-256 certificate for 127.0.0.1, made with the `openssl` CLI in a temporary folder. */
export function makeCertificate(): Certificate {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-provider-tls-"));
  const keyPath = join(dir, "key.pem");
  const certPath = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
    { stdio: "ignore" },
  );
  return { key: readFileSync(keyPath, "utf8"), cert: readFileSync(certPath, "utf8"), remove: () => rmSync(dir, { recursive: true, force: true }) };
}
