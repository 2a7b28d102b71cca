/**
 * Request features: what the router knows about a chat request before any model sees it.
 *
 * A request becomes a sparse vector in a fixed space of {@link FEATURE_DIM} dimensions:
 * - the first {@link DENSE_FEATURE_NAMES}.length indices are hand-crafted, readable features
 *   (length, digits, operators, code markers, multiple-choice options, cues, task type, script);
 * - the remaining 2^{@link HASH_BITS} indices are hashed word unigrams and bigrams of the whole
 *   conversation, and again of its "focus" (the last paragraph(s) of the last user message, where a
 *   few-shot prompt puts the actual question), each namespace scaled by 1/sqrt(its token count).
 * One pass over the text, no regular expressions on the hot path, no substrings per token.
 */
import { FNV_OFFSET, combine, fnvStep, hashString, mix32 } from "./hash.js";

/** One chat message, as in the OpenAI chat API. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** The kinds of request the classifier tells apart. */
export type TaskType = "code" | "math" | "multiple_choice" | "translation" | "extraction" | "creative" | "chat";

/** Every task type, in detection order. */
export const TASK_TYPES: readonly TaskType[] = ["code", "multiple_choice", "translation", "math", "extraction", "creative", "chat"];

/** The dominant script of a request (`en` = Latin script with English function words). */
export type Language = "en" | "latin" | "cyrillic" | "cjk" | "arabic" | "indic" | "other";

/** Every language label. */
export const LANGUAGES: readonly Language[] = ["en", "latin", "cyrillic", "cjk", "arabic", "indic", "other"];

/** Which features a router uses: everything, or only the prompt's length (a baseline). */
export type FeatureSet = "full" | "length";

/**
 * How a conversation becomes features. 1: every message counts alike (routers trained before the
 * chat work, whose files carry no `featureVersion`). 2: multi-turn weighted (the last user turn
 * counts fully, earlier user turns half, assistant and system turns a quarter; the previous user
 * turn's focus joins the last one's at half weight) plus the chat cues of {@link CHAT_FEATURE_NAMES}.
 * A single-turn prompt gets the same features under both, apart from the chat cues.
 */
export type FeatureVersion = 1 | 2;

/** The newest feature version: what training uses unless told otherwise. */
export const LATEST_FEATURE_VERSION: FeatureVersion = 2;

/** A readable digest of a request, for logs, traces and the classifier's response. */
export interface FeatureSummary {
  taskType: TaskType;
  chars: number;
  /** About chars/4, the usual rule of thumb for English with BPE tokenisers; CJK counts a token per character. */
  estimatedTokens: number;
  words: number;
  lines: number;
  turns: number;
  hasSystemPrompt: boolean;
  language: Language;
  digits: number;
  mathOperators: number;
  multipleChoiceOptions: number;
  codeMarkers: number;
  questionWords: number;
  reasoningCues: number;
  /** Words that mark demanding work: proofs and derivations, concurrency, distributed systems, optimisation. */
  hardCues: number;
  paragraphs: number;
}

/** A sparse vector: parallel arrays of indices and values (indices may repeat; values then add up). */
export interface SparseVector {
  indices: Int32Array;
  values: Float32Array;
}

/** The features of one request. */
export interface PromptFeatures {
  vector: SparseVector;
  summary: FeatureSummary;
}

/** log2 of the number of hashed dimensions. */
export const HASH_BITS = 18;
const HASH_MASK = (1 << HASH_BITS) - 1;

const LENGTH_BUCKETS = 12;

/** Names of the dense features, in index order (hashed features follow them). */
export const DENSE_FEATURE_NAMES: readonly string[] = [
  "log_chars",
  "log_words",
  "log_lines",
  "log_focus_chars",
  "log_paragraphs",
  "log_turns",
  "has_system_prompt",
  "digit_ratio",
  "log_numbers",
  "math_operator_ratio",
  "uppercase_ratio",
  "non_ascii_ratio",
  "log_multiple_choice_options",
  "log_code_markers",
  "log_question_marks",
  "log_question_words",
  "log_reasoning_cues",
  "mean_word_length",
  ...Array.from({ length: LENGTH_BUCKETS }, (_, i) => `length_bucket_${i}`),
  ...TASK_TYPES.map((t) => `task_${t}`),
  ...LANGUAGES.map((l) => `language_${l}`),
];

const DENSE = DENSE_FEATURE_NAMES.length;

/**
 * Chat cues (feature version 2), each log-scaled: what decides how hard a conversation is, beyond its
 * subject. They sit at fixed hashed slots (so the feature space, and every older router, is unchanged).
 */
export const CHAT_FEATURE_NAMES: readonly string[] = [
  "log_constraint_cues",
  "log_long_answer_cues",
  "log_brevity_cues",
  "log_hard_cues",
  "log_code_words",
  "log_math_words",
  "log_enumerated_lines",
  "log_user_turns",
  "log_context_chars",
  "has_assistant_turn",
  "log_last_user_chars",
];

/** Size of the feature space: dense features, then the hashed ones. */
export const FEATURE_DIM = DENSE + (1 << HASH_BITS);

const Dense = {
  LogChars: 0,
  LogWords: 1,
  LogLines: 2,
  LogFocusChars: 3,
  LogParagraphs: 4,
  LogTurns: 5,
  HasSystem: 6,
  DigitRatio: 7,
  LogNumbers: 8,
  MathOperatorRatio: 9,
  UppercaseRatio: 10,
  NonAsciiRatio: 11,
  LogOptions: 12,
  LogCode: 13,
  LogQuestionMarks: 14,
  LogQuestionWords: 15,
  LogReasoning: 16,
  MeanWordLength: 17,
  LengthBucket0: 18,
} as const;
const TASK_BASE = Dense.LengthBucket0 + LENGTH_BUCKETS;
const LANGUAGE_BASE = TASK_BASE + TASK_TYPES.length;

const NS_UNIGRAM = hashString("ns:unigram");
const NS_BIGRAM = hashString("ns:bigram");
const NS_FOCUS_UNIGRAM = hashString("ns:focus-unigram");
const NS_FOCUS_BIGRAM = hashString("ns:focus-bigram");
const NS_ROLE = hashString("ns:role");
const NS_TASK_DENSE = hashString("ns:task-dense");
const NS_TASK_UNIGRAM = hashString("ns:task-unigram");
const NS_CHAT_DENSE = hashString("ns:chat-dense");
/** Hashed slot of each chat cue. */
const CHAT_SLOTS = CHAT_FEATURE_NAMES.map((_, i) => DENSE + (combine(NS_CHAT_DENSE, i) & HASH_MASK));

/** The hash a token gets from the scanner: FNV-1a over its lowercased code units. */
function tokenHash(token: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < token.length; i++) h = fnvStep(h, token.charCodeAt(i));
  return h;
}

function hashSet(words: string): Set<number> {
  return new Set(words.split(/\s+/).filter(Boolean).map(tokenHash));
}

const QUESTION_WORDS = hashSet("what how why which who whom whose when where whether");
const REASONING_CUES = hashSet(
  "prove proof explain derive justify step steps reason reasoning analyze analyse evaluate compare calculate compute solve determine estimate show why",
);
const HARD_CUES = hashSet(
  "prove proof proofs derive derivation theorem lemma rigorous rigorously formally induction contradiction concurrent concurrency thread threads distributed consensus optimise optimize asymptotic complexity scalable lock",
);
const CODE_WORDS = hashSet(
  "def function return import class const let var public private void static include printf println console lambda async await elif struct sql select python javascript typescript java golang rust regex algorithm",
);
const CODE_VERBS = hashSet("write implement code program script debug refactor compile");
const MATH_WORDS = hashSet(
  "calculate compute solve equation sum total how many much percent percentage cost costs price average ratio times each per remaining left integer number numbers value area volume probability",
);
const TRANSLATION_WORDS = hashSet("translate translation translated traduire übersetze traducir");
const EXTRACTION_WORDS = hashSet("extract summarize summarise summary tldr classify json parse list label entities keywords");
const CREATIVE_WORDS = hashSet("story poem haiku essay song lyrics limerick fiction novel screenplay creative imagine joke");
const CONSTRAINT_WORDS = hashSet(
  "must should without only exactly least most ensure never avoid cannot don dont not require required requires requirements strictly limit limited maximum minimum each every specific format constraint constraints",
);
const LONG_ANSWER_WORDS = hashSet(
  "write generate create design build implement develop detailed comprehensive thorough essay article report plan outline full complete entire script program application app component tutorial guide draft",
);
const BREVITY_WORDS = hashSet("briefly brief short concise concisely tldr quick quickly shortly");
const ENGLISH_WORDS = hashSet("the of and to in is that for it with as was on be are this which by an or");

function isCjk(c: number): boolean {
  return (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x9fff) || (c >= 0xac00 && c <= 0xd7af) || (c >= 0xf900 && c <= 0xfaff);
}

/** Letters and digits in any script, except general punctuation and CJK (which tokenise per character). */
function isWordChar(c: number): boolean {
  if (c < 128) return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57);
  if (c >= 0x2000 && c <= 0x2bff) return false;
  if (c === 0xa0 || c === 0xd7 || c === 0xf7 || (c >= 0x3000 && c <= 0x303f) || (c >= 0xff00 && c <= 0xff0f)) return false;
  return !isCjk(c);
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9 || c === 11 || c === 12 || c === 0xa0 || c === 0x3000 || (c >= 0x2000 && c <= 0x200b);
}

function isMathOperator(c: number): boolean {
  return c === 43 || c === 45 || c === 42 || c === 47 || c === 61 || c === 94 || c === 37 || c === 60 || c === 62 || c === 0xd7 || c === 0xf7 || (c >= 0x2200 && c <= 0x22ff);
}

/** Where the focus of a message starts: the last paragraphs holding at least 80 characters. */
function focusStart(text: string): number {
  let start = text.length;
  let end = text.length;
  while (end > 0 && isSpace(text.charCodeAt(end - 1))) end--;
  let pos = end;
  while (pos > 0) {
    const brk = text.lastIndexOf("\n\n", pos - 1);
    start = brk < 0 ? 0 : brk + 2;
    if (end - start >= 80 || brk < 0) break;
    pos = brk;
  }
  return Math.min(start, end);
}

// Scratch buffers reused across calls: extraction is synchronous, so one set is enough per process.
let tokenBuffer = new Int32Array(4096);
let focusFlags = new Uint8Array(4096);
let tokenWeights = new Float32Array(4096);

/** Weight of message m in feature version 2: the last user turn 1, earlier user turns 0.5, the rest 0.25. */
function turnWeight(role: string, m: number, lastUser: number): number {
  if (m === lastUser) return 1;
  return role === "user" ? 0.5 : 0.25;
}

/**
 * Turns a conversation into its feature vector and readable summary.
 * @param messages the chat messages, in order.
 * @param featureSet "length" keeps only the length features (the prompt-length baseline).
 * @param terms when given, receives the focus's term hashes (word unigrams and bigrams, with repeats), for neighbour search.
 * @param version the feature version (see {@link FeatureVersion}); a router passes its own.
 */
export function extractFeatures(messages: readonly ChatMessage[], featureSet: FeatureSet = "full", terms?: number[], version: FeatureVersion = 1): PromptFeatures {
  let chars = 0;
  let digits = 0;
  let uppercase = 0;
  let nonAscii = 0;
  let cjk = 0;
  let cyrillic = 0;
  let arabic = 0;
  let indic = 0;
  let latinLetters = 0;
  let lines = 0;
  let paragraphs = 0;
  let mathOperators = 0;
  let options = 0;
  let braces = 0;
  let questionMarks = 0;
  let numbers = 0;
  let wordChars = 0;
  let codeFences = 0;
  let hasSystemPrompt = false;
  let tokens = 0;
  let focusChars = 0;

  let enumerated = 0;

  let lastUser = -1;
  let prevUser = -1;
  for (let m = 0; m < messages.length; m++) {
    if (messages[m]?.role !== "user") continue;
    prevUser = lastUser;
    lastUser = m;
  }
  if (lastUser < 0) lastUser = messages.length - 1;
  const weighted = version >= 2;
  if (!weighted) prevUser = -1;
  // Version 2: counts weighted by turn (see turnWeight), accumulated message by message.
  const counts = (): number[] => [chars, digits, uppercase, nonAscii, lines, paragraphs, mathOperators, options, braces, questionMarks, numbers, wordChars, codeFences, enumerated];
  const wsum = new Float64Array(14);
  let userTurns = 0;
  let hasAssistant = false;
  let contextChars = 0;
  let lastUserChars = 0;

  let roleFeatures = 0;
  const roleHashes: number[] = [];
  for (let m = 0; m < messages.length; m++) {
    const message = messages[m];
    if (!message) continue;
    const text = typeof message.content === "string" ? message.content : "";
    if (message.role === "system" || message.role === "developer") hasSystemPrompt = true;
    if (message.role === "user") userTurns++;
    if (message.role === "assistant") hasAssistant = true;
    if (m < lastUser) contextChars += text.length;
    if (m === lastUser) lastUserChars = text.length;
    const weight = weighted ? turnWeight(message.role, m, lastUser) : 1;
    const before = weighted ? counts() : undefined;
    const focusFlag = m === lastUser ? 1 : 2;
    if (roleFeatures < 8) {
      roleHashes.push(hashString(message.role));
      roleFeatures++;
    }
    const focusFrom = m === lastUser || m === prevUser ? focusStart(text) : Number.MAX_SAFE_INTEGER;
    if (m === lastUser) focusChars = text.length - focusFrom;
    chars += text.length;
    lines += text.length > 0 ? 1 : 0;
    paragraphs += text.length > 0 ? 1 : 0;

    let h = FNV_OFFSET;
    let inWord = false;
    let wordHasDigit = false;
    let lineStart = true;
    let prev = 10;
    const n = text.length;
    const ensure = (): void => {
      if (tokens >= tokenBuffer.length) {
        const bigger = new Int32Array(tokenBuffer.length * 2);
        bigger.set(tokenBuffer);
        tokenBuffer = bigger;
        const flags = new Uint8Array(focusFlags.length * 2);
        flags.set(focusFlags);
        focusFlags = flags;
        const weights = new Float32Array(tokenWeights.length * 2);
        weights.set(tokenWeights);
        tokenWeights = weights;
      }
    };
    for (let i = 0; i <= n; i++) {
      const c = i < n ? text.charCodeAt(i) : 32;
      if (i < n && isWordChar(c)) {
        if (c >= 48 && c <= 57) {
          digits++;
          wordHasDigit = true;
        } else if (c >= 65 && c <= 90) uppercase++;
        else if (c >= 97 && c <= 122) latinLetters++;
        else if (c >= 128) {
          nonAscii++;
          if (c >= 0x400 && c <= 0x4ff) cyrillic++;
          else if (c >= 0x600 && c <= 0x6ff) arabic++;
          else if (c >= 0x900 && c <= 0xdff) indic++;
          else if (c < 0x250) latinLetters++;
        }
        if (lineStart && c >= 65 && c <= 74 && i + 1 < n) {
          const next = text.charCodeAt(i + 1);
          if ((next === 41 || next === 46 || next === 58) && (i + 2 >= n || isSpace(text.charCodeAt(i + 2)))) options++;
        }
        if (lineStart && c >= 48 && c <= 57 && i + 1 < n) {
          const next = text.charCodeAt(i + 1);
          if (next === 46 || next === 41) enumerated++;
        }
        h = fnvStep(h, c >= 65 && c <= 90 ? c + 32 : c);
        inWord = true;
        wordChars++;
        lineStart = false;
        prev = c;
        continue;
      }
      if (inWord) {
        ensure();
        tokenBuffer[tokens] = h;
        focusFlags[tokens] = i > focusFrom ? focusFlag : 0;
        tokenWeights[tokens] = weight;
        tokens++;
        if (wordHasDigit) numbers++;
        h = FNV_OFFSET;
        inWord = false;
        wordHasDigit = false;
      }
      if (i >= n) break;
      if (c === 10) {
        lines++;
        if (prev === 10) paragraphs++;
        lineStart = true;
        prev = c;
        continue;
      }
      if (isSpace(c)) continue;
      if (c >= 128) nonAscii++;
      if (isCjk(c)) cjk++;
      if (isMathOperator(c)) mathOperators++;
      else if (c === 123 || c === 125 || c === 59) braces++;
      else if (c === 63 || c === 0xff1f) questionMarks++;
      else if (c === 96 && i + 2 < n && text.charCodeAt(i + 1) === 96 && text.charCodeAt(i + 2) === 96) codeFences++;
      if (lineStart && c === 40 && i + 2 < n) {
        const letter = text.charCodeAt(i + 1);
        if (letter >= 65 && letter <= 74 && text.charCodeAt(i + 2) === 41) options++;
      }
      if (lineStart && (c === 45 || c === 42) && i + 1 < n && isSpace(text.charCodeAt(i + 1))) enumerated++;
      lineStart = false;
      prev = c;
      // Punctuation and CJK characters are tokens of their own.
      ensure();
      tokenBuffer[tokens] = fnvStep(FNV_OFFSET, c);
      focusFlags[tokens] = i >= focusFrom ? focusFlag : 0;
      tokenWeights[tokens] = weight;
      tokens++;
    }
    if (before) {
      const after = counts();
      for (let i = 0; i < after.length; i++) wsum[i] = (wsum[i] as number) + weight * ((after[i] as number) - (before[i] as number));
    }
  }

  if (terms) collectFocusTerms(tokens, terms);

  let questionWords = 0;
  let reasoningCues = 0;
  let hardCues = 0;
  let codeWords = 0;
  let codeVerbs = 0;
  let mathWords = 0;
  let translationWords = 0;
  let extractionWords = 0;
  let creativeWords = 0;
  let englishWords = 0;
  let focusTokens = 0;
  // Version 2: weighted counts (for the vector and the task type); the summary keeps raw counts.
  let wTokens = 0;
  let wFocus = 0;
  let wQuestionWords = 0;
  let wReasoning = 0;
  let wHard = 0;
  let wCodeWords = 0;
  let wCodeVerbs = 0;
  let wMathWords = 0;
  let wTranslation = 0;
  let wExtraction = 0;
  let wCreative = 0;
  let wConstraints = 0;
  let wLongAnswer = 0;
  let wBrevity = 0;
  for (let t = 0; t < tokens; t++) {
    const h = tokenBuffer[t] as number;
    if (focusFlags[t]) focusTokens++;
    if (weighted) {
      const w = tokenWeights[t] as number;
      wTokens += w;
      const flag = focusFlags[t] as number;
      if (flag) wFocus += flag === 1 ? 1 : 0.5;
      if (QUESTION_WORDS.has(h)) wQuestionWords += w;
      if (REASONING_CUES.has(h)) wReasoning += w;
      if (HARD_CUES.has(h)) wHard += w;
      if (CODE_WORDS.has(h)) wCodeWords += w;
      if (CODE_VERBS.has(h)) wCodeVerbs += w;
      if (MATH_WORDS.has(h)) wMathWords += w;
      if (TRANSLATION_WORDS.has(h)) wTranslation += w;
      if (EXTRACTION_WORDS.has(h)) wExtraction += w;
      if (CREATIVE_WORDS.has(h)) wCreative += w;
      if (CONSTRAINT_WORDS.has(h)) wConstraints += w;
      if (LONG_ANSWER_WORDS.has(h)) wLongAnswer += w;
      if (BREVITY_WORDS.has(h)) wBrevity += w;
    }
    if (QUESTION_WORDS.has(h)) questionWords++;
    if (REASONING_CUES.has(h)) reasoningCues++;
    if (HARD_CUES.has(h)) hardCues++;
    if (CODE_WORDS.has(h)) codeWords++;
    if (CODE_VERBS.has(h)) codeVerbs++;
    if (MATH_WORDS.has(h)) mathWords++;
    if (TRANSLATION_WORDS.has(h)) translationWords++;
    if (EXTRACTION_WORDS.has(h)) extractionWords++;
    if (CREATIVE_WORDS.has(h)) creativeWords++;
    if (ENGLISH_WORDS.has(h)) englishWords++;
  }
  const words = tokens;
  const codeMarkers = codeFences * 3 + codeWords + (braces >= 4 ? 2 : 0);

  // The counts that make the vector and the task type: raw in version 1, turn-weighted in version 2.
  const v = weighted
    ? {
        chars: wsum[0] as number, digits: wsum[1] as number, uppercase: wsum[2] as number, nonAscii: wsum[3] as number, lines: wsum[4] as number,
        paragraphs: wsum[5] as number, mathOperators: wsum[6] as number, options: wsum[7] as number, braces: wsum[8] as number,
        questionMarks: wsum[9] as number, numbers: wsum[10] as number, wordChars: wsum[11] as number, codeFences: wsum[12] as number,
        words: wTokens, questionWords: wQuestionWords, reasoningCues: wReasoning, codeWords: wCodeWords, codeVerbs: wCodeVerbs,
        mathWords: wMathWords, translationWords: wTranslation, extractionWords: wExtraction, creativeWords: wCreative,
      }
    : { chars, digits, uppercase, nonAscii, lines, paragraphs, mathOperators, options, braces, questionMarks, numbers, wordChars, codeFences, words, questionWords, reasoningCues, codeWords, codeVerbs, mathWords, translationWords, extractionWords, creativeWords };
  const vCodeMarkers = weighted ? v.codeFences * 3 + v.codeWords + (v.braces >= 4 ? 2 : 0) : codeMarkers;

  let taskType: TaskType = "chat";
  if (v.codeFences > 0 || v.codeWords >= 3 || (v.codeWords >= 1 && v.codeVerbs >= 1)) taskType = "code";
  else if (v.options >= 2) taskType = "multiple_choice";
  else if (v.translationWords > 0) taskType = "translation";
  else if ((v.digits > 0 && v.mathWords >= 2) || v.mathOperators >= 3) taskType = "math";
  else if (v.extractionWords > 0) taskType = "extraction";
  else if (v.creativeWords > 0) taskType = "creative";

  const letters = latinLetters + uppercase;
  const scripts: [Language, number][] = [
    ["latin", letters],
    ["cyrillic", cyrillic],
    ["cjk", cjk],
    ["arabic", arabic],
    ["indic", indic],
  ];
  let language: Language = "other";
  let best = 0;
  for (const [name, count] of scripts) {
    if (count > best) {
      best = count;
      language = name;
    }
  }
  if (language === "latin" && englishWords * 12 >= Math.min(words, 400)) language = "en";

  const estimatedTokens = Math.max(1, Math.round((chars - cjk) / 4 + cjk));
  const summary: FeatureSummary = {
    taskType,
    chars,
    estimatedTokens,
    words,
    lines,
    turns: messages.length,
    hasSystemPrompt,
    language,
    digits,
    mathOperators,
    multipleChoiceOptions: options,
    codeMarkers,
    questionWords,
    reasoningCues,
    hardCues,
    paragraphs,
  };

  const dense = new Float32Array(DENSE);
  const safe = Math.max(v.chars, 1);
  dense[Dense.LogChars] = Math.log1p(v.chars) / 8;
  dense[Dense.LogWords] = Math.log1p(v.words) / 7;
  dense[Dense.LogLines] = Math.log1p(v.lines) / 4;
  const bucket = Math.min(LENGTH_BUCKETS - 1, Math.max(0, Math.floor(Math.log2(Math.max(v.chars, 1))) - 4));
  dense[Dense.LengthBucket0 + bucket] = 1;

  if (featureSet === "length") return { vector: lengthOnly(dense), summary };

  dense[Dense.LogFocusChars] = Math.log1p(focusChars) / 8;
  dense[Dense.LogParagraphs] = Math.log1p(v.paragraphs) / 3;
  dense[Dense.LogTurns] = Math.log1p(messages.length) / 2;
  dense[Dense.HasSystem] = hasSystemPrompt ? 1 : 0;
  dense[Dense.DigitRatio] = Math.min(1, (v.digits / safe) * 5);
  dense[Dense.LogNumbers] = Math.log1p(v.numbers) / 4;
  dense[Dense.MathOperatorRatio] = Math.min(1, (v.mathOperators / safe) * 10);
  dense[Dense.UppercaseRatio] = Math.min(1, (v.uppercase / safe) * 5);
  dense[Dense.NonAsciiRatio] = v.nonAscii / safe;
  dense[Dense.LogOptions] = Math.log1p(v.options) / 3;
  dense[Dense.LogCode] = Math.log1p(vCodeMarkers) / 3;
  dense[Dense.LogQuestionMarks] = Math.log1p(v.questionMarks) / 3;
  dense[Dense.LogQuestionWords] = Math.log1p(v.questionWords) / 3;
  dense[Dense.LogReasoning] = Math.log1p(v.reasoningCues) / 3;
  dense[Dense.MeanWordLength] = v.words > 0 ? Math.min(2, v.wordChars / v.words / 6) : 0;
  dense[TASK_BASE + TASK_TYPES.indexOf(taskType)] = 1;
  dense[LANGUAGE_BASE + LANGUAGES.indexOf(language)] = 1;

  const taskSeed = TASK_TYPES.indexOf(taskType) + 1;
  const hashedCount = DENSE + tokens * 2 + focusTokens * 3 + roleHashes.length + (weighted ? CHAT_FEATURE_NAMES.length : 0);
  const indices = new Int32Array(DENSE + hashedCount);
  const values = new Float32Array(DENSE + hashedCount);
  let k = 0;
  for (let i = 0; i < DENSE; i++) {
    const v = dense[i] as number;
    if (v !== 0) {
      indices[k] = i;
      values[k] = v;
      k++;
      // The same feature again, specific to the task type: lets one router weigh length (say) differently for code and for math.
      indices[k] = DENSE + (combine(NS_TASK_DENSE + taskSeed, i) & HASH_MASK);
      values[k] = v;
      k++;
    }
  }
  const allScale = weighted ? (wTokens > 0 ? 1 / Math.sqrt(wTokens) : 0) : tokens > 0 ? 1 / Math.sqrt(tokens) : 0;
  const focusScale = weighted ? (wFocus > 0 ? 1 / Math.sqrt(wFocus) : 0) : focusTokens > 0 ? 1 / Math.sqrt(focusTokens) : 0;
  let prevToken = 0;
  let prevFocus = 0;
  for (let t = 0; t < tokens; t++) {
    const h = tokenBuffer[t] as number;
    const scale = weighted ? allScale * (tokenWeights[t] as number) : allScale;
    indices[k] = DENSE + (mix32(h ^ NS_UNIGRAM) & HASH_MASK);
    values[k++] = scale;
    indices[k] = DENSE + (combine(prevToken ^ NS_BIGRAM, h) & HASH_MASK);
    values[k++] = scale;
    prevToken = h;
    const flag = focusFlags[t] as number;
    if (flag) {
      const fs = flag === 1 ? focusScale : 0.5 * focusScale;
      indices[k] = DENSE + (mix32(h ^ NS_FOCUS_UNIGRAM) & HASH_MASK);
      values[k++] = fs;
      indices[k] = DENSE + (combine(prevFocus ^ NS_FOCUS_BIGRAM, h) & HASH_MASK);
      values[k++] = fs;
      indices[k] = DENSE + (combine(NS_TASK_UNIGRAM + taskSeed, h) & HASH_MASK);
      values[k++] = fs;
      prevFocus = h;
    }
  }
  if (weighted) {
    const chat = [
      Math.log1p(wConstraints) / 3,
      Math.log1p(wLongAnswer) / 3,
      Math.log1p(wBrevity) / 2,
      Math.log1p(wHard) / 2,
      Math.log1p(wCodeWords) / 3,
      Math.log1p(wMathWords) / 3,
      Math.log1p(wsum[13] as number) / 3,
      Math.log1p(userTurns) / 2,
      Math.log1p(contextChars) / 8,
      hasAssistant ? 1 : 0,
      Math.log1p(lastUserChars) / 8,
    ];
    for (let i = 0; i < chat.length; i++) {
      const x = chat[i] as number;
      if (x === 0) continue;
      indices[k] = CHAT_SLOTS[i] as number;
      values[k++] = x;
    }
  }
  for (let r = 0; r < roleHashes.length; r++) {
    indices[k] = DENSE + (combine(NS_ROLE, (roleHashes[r] as number) + r * 7919) & HASH_MASK);
    values[k++] = 0.5;
  }
  return { vector: { indices: indices.subarray(0, k), values: values.subarray(0, k) }, summary };
}

const NS_TERM_BIGRAM = hashString("ns:term-bigram");

/** Focus unigrams and bigrams of the last scan, as 32-bit term hashes (see `knn.ts`). */
function collectFocusTerms(tokens: number, out: number[]): void {
  let prev = 0;
  for (let t = 0; t < tokens; t++) {
    if (!focusFlags[t]) continue;
    const h = tokenBuffer[t] as number;
    out.push(mix32(h));
    if (prev !== 0) out.push(combine(prev ^ NS_TERM_BIGRAM, h));
    prev = h;
  }
}

/** The task type a feature vector was extracted with (its one-hot dense feature), or undefined (length-only vectors). */
export function taskTypeOfVector(vector: SparseVector): TaskType | undefined {
  const { indices, values } = vector;
  for (let k = 0; k < indices.length; k++) {
    const i = (indices[k] as number) - TASK_BASE;
    if (i >= 0 && i < TASK_TYPES.length && (values[k] as number) > 0) return TASK_TYPES[i];
  }
  return undefined;
}

/** The length features (log chars, words, lines and the length bucket) as a sparse vector. */
function lengthOnly(dense: Float32Array): SparseVector {
  const indices: number[] = [];
  const values: number[] = [];
  for (let i = 0; i < DENSE; i++) {
    const v = dense[i] as number;
    const isLength = i < 3 || (i >= Dense.LengthBucket0 && i < Dense.LengthBucket0 + LENGTH_BUCKETS);
    if (v !== 0 && isLength) {
      indices.push(i);
      values.push(v);
    }
  }
  return { indices: Int32Array.from(indices), values: Float32Array.from(values) };
}

/**
 * A cache key for routing decisions: every message as `role: content`, lowercased, whitespace
 * collapsed to single spaces, digits kept (so "2+2" and "2+3" do not share a decision).
 */
export function normalisePrompt(messages: readonly ChatMessage[]): string {
  return messages
    .map((m) => `${m.role}: ${typeof m.content === "string" ? m.content : ""}`.toLowerCase().replace(/\s+/g, " ").trim())
    .join("\n");
}
