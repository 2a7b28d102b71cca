/**
 * Raw event streams as each provider documents them, byte for byte (framing, spacing, field order),
 * with answer text that has multi-byte UTF-8 characters (2, 3 and 4 bytes) so trickled writes
 * split them.
 */

/** The answer every text fixture streams. */
export const ANSWER = "Grüße — 你好 👋 done.";

/** A key that no pattern in the sanitiser would catch: only verbatim redaction keeps it out. */
export const KEY = "zz9-plural-z-alpha-4242";

// OpenAI Chat Completions, stream: true with stream_options.include_usage: every chunk has
// "usage": null, and the usage arrives alone in a final chunk whose choices array is empty.
const oaBase = '"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306"';
export const OPENAI_TEXT =
  `data: {${oaBase},"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
  `data: {${oaBase},"choices":[{"index":0,"delta":{"content":"Grüße — "},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
  `data: {${oaBase},"choices":[{"index":0,"delta":{"content":"你好 👋"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
  `data: {${oaBase},"choices":[{"index":0,"delta":{"content":" done."},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
  `data: {${oaBase},"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n` +
  `data: {${oaBase},"choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":6,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n` +
  "data: [DONE]\n\n";

/** The same text from a server that ignores stream_options (no usage anywhere). */
export const OPENAI_TEXT_NO_USAGE = OPENAI_TEXT.split("\n\n")
  .filter((e) => e && !e.includes('"choices":[]'))
  .map((e) => `${e.replace(',"usage":null', "")}\n\n`)
  .join("");

/** Everything before [DONE]: a stream cut short of its terminator. */
export const OPENAI_TEXT_NO_DONE = OPENAI_TEXT.replace("data: [DONE]\n\n", "");

const oaTool = '"id":"chatcmpl-BA1","object":"chat.completion.chunk","created":1741570300,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf"';
export const OPENAI_TOOL_CALLS =
  `data: {${oaTool},"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
  `data: {${oaTool},"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"lo"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
  `data: {${oaTool},"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\\":\\"Paris\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
  `data: {${oaTool},"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
  `data: {${oaTool},"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}\n\n` +
  `data: {${oaTool},"choices":[],"usage":{"prompt_tokens":81,"completion_tokens":28,"total_tokens":109}}\n\n` +
  "data: [DONE]\n\n";

// Anthropic Messages streaming: named events, a ping, usage in message_start (input) and
// message_delta (cumulative output), message_stop as the terminator.
export const ANTHROPIC_TEXT =
  "event: message_start\n" +
  'data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}\n\n' +
  "event: content_block_start\n" +
  'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n' +
  "event: ping\n" +
  'data: {"type": "ping"}\n\n' +
  "event: content_block_delta\n" +
  'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Grüße — "}}\n\n' +
  "event: content_block_delta\n" +
  'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"你好 👋"}}\n\n' +
  "event: content_block_delta\n" +
  'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" done."}}\n\n' +
  "event: content_block_stop\n" +
  'data: {"type":"content_block_stop","index":0}\n\n' +
  "event: message_delta\n" +
  'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}\n\n' +
  "event: message_stop\n" +
  'data: {"type":"message_stop"}\n\n';

export const ANTHROPIC_NO_STOP = ANTHROPIC_TEXT.replace('event: message_stop\ndata: {"type":"message_stop"}\n\n', "");

/** Prompt caching: input_tokens excludes cache reads and writes. */
export const ANTHROPIC_CACHED = ANTHROPIC_TEXT.replace(
  '"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}',
  '"usage":{"input_tokens":25,"cache_creation_input_tokens":1200,"cache_read_input_tokens":3000,"output_tokens":1}',
);

/** An overload reported inside a 200 stream after text went out. */
export const ANTHROPIC_ERROR_MID_STREAM =
  ANTHROPIC_TEXT.slice(0, ANTHROPIC_TEXT.indexOf("event: content_block_delta\n", ANTHROPIC_TEXT.indexOf("Grüße"))) +
  "event: error\n" +
  'data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n';

/** An overload reported inside a 200 stream before any text. */
export const ANTHROPIC_ERROR_BEFORE_TEXT =
  ANTHROPIC_TEXT.slice(0, ANTHROPIC_TEXT.indexOf("event: content_block_delta\n")) +
  "event: error\n" +
  'data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n';

export const ANTHROPIC_TOOL_USE =
  "event: message_start\n" +
  'data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}\n\n' +
  "event: content_block_start\n" +
  'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n' +
  "event: ping\n" +
  'data: {"type": "ping"}\n\n' +
  "event: content_block_delta\n" +
  'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}\n\n' +
  "event: content_block_stop\n" +
  'data: {"type":"content_block_stop","index":0}\n\n' +
  "event: content_block_start\n" +
  'data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}\n\n' +
  "event: content_block_delta\n" +
  'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}\n\n' +
  "event: content_block_delta\n" +
  'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}\n\n' +
  "event: content_block_delta\n" +
  'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"Paris\\"}"}}\n\n' +
  "event: content_block_stop\n" +
  'data: {"type":"content_block_stop","index":1}\n\n' +
  "event: message_delta\n" +
  'data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}\n\n' +
  "event: message_stop\n" +
  'data: {"type":"message_stop"}\n\n';

// Gemini streamGenerateContent?alt=sse: CRLF framing, no event names, cumulative usageMetadata in
// every chunk, no terminator: the stream ends after the chunk carrying finishReason.
const gmUsage = (candidates: number) => `"usageMetadata": {"promptTokenCount": 11,"candidatesTokenCount": ${candidates},"totalTokenCount": ${11 + candidates}}`;
export const GEMINI_TEXT =
  `data: {"candidates": [{"content": {"parts": [{"text": "Grüße — "}],"role": "model"},"index": 0}],${gmUsage(3)},"modelVersion": "gemini-2.0-flash","responseId": "ZqE7aPTkLJ6j1dkP1Z2H0Qg"}\r\n\r\n` +
  `data: {"candidates": [{"content": {"parts": [{"text": "你好 👋"}],"role": "model"},"index": 0}],${gmUsage(7)},"modelVersion": "gemini-2.0-flash","responseId": "ZqE7aPTkLJ6j1dkP1Z2H0Qg"}\r\n\r\n` +
  `data: {"candidates": [{"content": {"parts": [{"text": " done."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 11,"candidatesTokenCount": 9,"totalTokenCount": 20,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 11}],"candidatesTokensDetails": [{"modality": "TEXT","tokenCount": 9}]},"modelVersion": "gemini-2.0-flash","responseId": "ZqE7aPTkLJ6j1dkP1Z2H0Qg"}\r\n\r\n`;

export const GEMINI_NO_FINISH = GEMINI_TEXT.replace('"finishReason": "STOP",', "");

/** A thinking model with an implicit cache hit: thoughts and cached tokens in usage. */
export const GEMINI_THINKING =
  `data: {"candidates": [{"content": {"parts": [{"text": "Forty-two."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 2100,"candidatesTokenCount": 4,"totalTokenCount": 2335,"cachedContentTokenCount": 2048,"thoughtsTokenCount": 231},"modelVersion": "gemini-2.5-flash"}\r\n\r\n`;

export const GEMINI_FUNCTION_CALL =
  `data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"location": "Paris"}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 64,"candidatesTokenCount": 6,"totalTokenCount": 70},"modelVersion": "gemini-2.5-flash"}\r\n\r\n`;

export const GEMINI_SAFETY =
  `data: {"candidates": [{"content": {"parts": [{"text": "I can"}],"role": "model"},"index": 0}],${gmUsage(2)},"modelVersion": "gemini-2.0-flash"}\r\n\r\n` +
  `data: {"candidates": [{"finishReason": "SAFETY","index": 0,"safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT","probability": "HIGH","blocked": true}]}],${gmUsage(2)},"modelVersion": "gemini-2.0-flash"}\r\n\r\n`;

export const GEMINI_PROMPT_BLOCKED =
  `data: {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},"usageMetadata": {"promptTokenCount": 11,"totalTokenCount": 11},"modelVersion": "gemini-2.0-flash"}\r\n\r\n`;

/** What Google's front end answers a bad key with: 400, not 401. */
export const GEMINI_BAD_KEY = JSON.stringify({
  error: {
    code: 400,
    message: `API key not valid. Please pass a valid API key. (${KEY})`,
    status: "INVALID_ARGUMENT",
    details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID", domain: "googleapis.com", metadata: { service: "generativelanguage.googleapis.com" } }],
  },
});

/** A load balancer's error page. */
export const HTML_502 =
  "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n";
