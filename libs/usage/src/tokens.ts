import { countTokens as countO200k } from "gpt-tokenizer/encoding/o200k_base";

/** Tokens in a text, by the o200k_base BPE (GPT-4o family); a close estimate for other models. */
export function countTokens(text: string): number {
  return text.length === 0 ? 0 : countO200k(text);
}

/**
 * Prompt tokens of a chat as OpenAI counts them: each message costs its content and role plus
 * 3 framing tokens (1 more with a name), and every reply is primed with 3 tokens.
 */
export function countChatTokens(messages: readonly { role: string; content: string; name?: string }[]): number {
  let total = 3;
  for (const m of messages) {
    total += 3 + countTokens(m.content) + countTokens(m.role);
    if (m.name) total += 1 + countTokens(m.name);
  }
  return total;
}
