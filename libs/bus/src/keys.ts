/**
 * KV key for one model's price: `<provider>.<model>`, with every character NATS keys do not allow
 * (and `.`, which would split the model name into subject tokens) written as `=HH`.
 */
export function priceKey(provider: string, model: string): string {
  return `${escapeKeyPart(provider)}.${escapeKeyPart(model)}`;
}

/** Inverse of priceKey; undefined when the key is not of that shape. */
export function parsePriceKey(key: string): { provider: string; model: string } | undefined {
  const dot = key.indexOf(".");
  if (dot <= 0 || key.indexOf(".", dot + 1) !== -1) return undefined;
  try {
    return { provider: unescapeKeyPart(key.slice(0, dot)), model: unescapeKeyPart(key.slice(dot + 1)) };
  } catch {
    return undefined;
  }
}

function escapeKeyPart(part: string): string {
  return Array.from(Buffer.from(part, "utf8"))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9_\-/]/.test(c) ? c : `=${b.toString(16).padStart(2, "0").toUpperCase()}`;
    })
    .join("");
}

function unescapeKeyPart(part: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < part.length; i++) {
    if (part[i] === "=") {
      const hex = part.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) throw new Error("bad escape");
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(part.charCodeAt(i));
  }
  return Buffer.from(bytes).toString("utf8");
}
