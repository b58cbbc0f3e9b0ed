/**
 * Python regular expressions, matched in linear time. PEFT's `target_modules`,
 * `exclude_modules`, `rank_pattern` and `alpha_pattern` are Python `re` patterns that come
 * from adapter files — untrusted input — and a backtracking engine (JavaScript's RegExp,
 * Python's re) can take exponential time on a pattern such as `(.*.*)*z`. This module
 * parses the subset of Python's syntax that module patterns use and runs it as a Thompson
 * NFA: time O(pattern × name) whatever the pattern. Only whole-string matches are asked
 * for (callers wrap patterns as PEFT does), so no capture positions are tracked.
 *
 * Supported: literals and escapes (`\.`, `\\`, `\n`, `\xhh`, `\uhhhh`, …), `.`, classes
 * `[a-z_]` / `[^.]` with `\d \w \s` inside, `\d \D \w \W \s \S` (Unicode, as Python 3),
 * groups `( )`, `(?: )`, `(?P<name> )`, alternation, quantifiers `* + ? {m} {m,} {,n}
 * {m,n}` (greedy or lazy: the same for a yes/no match), anchors `^ $ \A \Z \b \B`, and the
 * global flags `(?i)` / `(?s)` at the start. Refused with a clear error: backreferences,
 * lookaround, conditionals, atomic groups and possessive quantifiers (they are what makes
 * backtracking engines explode, and a linear engine cannot run them).
 */

/** A compiled pattern. */
export interface Matcher {
  /** Whether the pattern matches all of `text`. */
  matches(text: string): boolean;
}

/** A pattern this engine cannot compile: malformed, or using a feature it refuses. */
export class PatternError extends Error {}

const MAX_PATTERN = 4096;
const MAX_STATES = 20_000;

type CharTest = (c: string) => boolean;
type Node =
  | { t: 'char'; test: CharTest }
  | { t: 'seq'; items: Node[] }
  | { t: 'alt'; options: Node[] }
  | { t: 'rep'; node: Node; min: number; max: number }
  | { t: 'assert'; kind: 'start' | 'end' | 'endStrict' | 'word' | 'notWord' };

const isDigit: CharTest = (c) => /\p{Nd}/u.test(c);
const isWord: CharTest = (c) => /[\p{L}\p{N}_]/u.test(c) || /\p{Mn}/u.test(c);
const isSpace: CharTest = (c) => /\s/u.test(c);

/** Compile a Python pattern for whole-string matching. Throws {@link PatternError}. */
export function compilePythonPattern(pattern: string): Matcher {
  if (typeof pattern !== 'string') throw new PatternError('a pattern must be a string');
  if (pattern.length > MAX_PATTERN) throw new PatternError(`the pattern is ${pattern.length} characters; at most ${MAX_PATTERN} are accepted`);
  let src = pattern;
  let ignoreCase = false;
  let dotAll = false;
  const flags = /^\(\?([a-zA-Z]+)\)/.exec(src);
  if (flags !== null) {
    for (const f of flags[1]) {
      if (f === 'i') ignoreCase = true;
      else if (f === 's') dotAll = true;
      else if (f !== 'u') throw new PatternError(`the inline flag (?${f}) is not supported (only (?i), (?s) and (?u))`);
    }
    src = src.slice(flags[0].length);
  }
  const ast = new Parser(src, ignoreCase, dotAll).parse();
  return new Nfa(ast);
}

class Parser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly ignoreCase: boolean,
    private readonly dotAll: boolean,
  ) {}

  parse(): Node {
    const node = this.alternation();
    if (this.i < this.s.length) throw this.error(this.s[this.i] === ')' ? 'unbalanced parenthesis' : `unexpected ${JSON.stringify(this.s[this.i])}`);
    return node;
  }

  private error(what: string): PatternError {
    return new PatternError(`${what} at position ${this.i}`);
  }

  private alternation(): Node {
    const options = [this.sequence()];
    while (this.s[this.i] === '|') {
      this.i++;
      options.push(this.sequence());
    }
    return options.length === 1 ? options[0] : { t: 'alt', options };
  }

  private sequence(): Node {
    const items: Node[] = [];
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')') {
      const atom = this.atom();
      items.push(this.quantified(atom));
    }
    return { t: 'seq', items };
  }

  private quantified(atom: Node): Node {
    let node = atom;
    for (;;) {
      const c = this.s[this.i];
      let min: number;
      let max: number;
      if (c === '*') [min, max] = [0, Infinity];
      else if (c === '+') [min, max] = [1, Infinity];
      else if (c === '?') [min, max] = [0, 1];
      else if (c === '{') {
        const m = /^\{(\d*)(,?)(\d*)\}/.exec(this.s.slice(this.i));
        if (m === null || (m[1] === '' && m[2] === '')) return node; // a literal "{", as in Python
        min = m[1] === '' ? 0 : Number(m[1]);
        max = m[2] === '' ? min : m[3] === '' ? Infinity : Number(m[3]);
        if (min > max) throw this.error(`min repeat greater than max repeat in ${m[0]}`);
        if (min > 1000 || (max !== Infinity && max > 1000)) throw this.error(`repeat count in ${m[0]} above 1000`);
        this.i += m[0].length - 1;
      } else return node;
      if (atom.t === 'assert') throw this.error('nothing to repeat');
      this.i++;
      if (this.s[this.i] === '+') throw this.error('possessive quantifiers are not supported');
      if (this.s[this.i] === '?') this.i++; // lazy: the same for a yes/no whole match
      node = { t: 'rep', node, min, max };
    }
  }

  private atom(): Node {
    const c = this.s[this.i++];
    if (c === '(') return this.group();
    if (c === '[') return this.charClass();
    if (c === '.') return { t: 'char', test: this.dotAll ? () => true : (x) => x !== '\n' };
    if (c === '^') return { t: 'assert', kind: 'start' };
    if (c === '$') return { t: 'assert', kind: 'end' };
    if (c === '\\') return this.escape(false) as Node;
    if (c === '*' || c === '+' || c === '?') throw this.error('nothing to repeat');
    return this.literal(c);
  }

  private literal(c: string): Node {
    if (!this.ignoreCase) return { t: 'char', test: (x) => x === c };
    const lower = c.toLowerCase();
    return { t: 'char', test: (x) => x.toLowerCase() === lower };
  }

  private group(): Node {
    if (this.s[this.i] === '?') {
      const rest = this.s.slice(this.i + 1);
      if (rest.startsWith(':')) this.i += 2;
      else if (/^P<[A-Za-z_][A-Za-z0-9_]*>/.test(rest)) this.i += 1 + (/^P<[A-Za-z_][A-Za-z0-9_]*>/.exec(rest) as RegExpExecArray)[0].length;
      else {
        const what = rest.startsWith('P=') ? 'backreferences' : /^[=!]|^<[=!]/.test(rest) ? 'lookahead and lookbehind' : rest.startsWith('>') ? 'atomic groups' : rest.startsWith('(') ? 'conditional groups' : `the group (?${rest.slice(0, 2)}`;
        throw this.error(`${what} are not supported`);
      }
    }
    const inner = this.alternation();
    if (this.s[this.i] !== ')') throw this.error('missing ), unterminated subpattern');
    this.i++;
    return inner;
  }

  /** An escape after the backslash; in a class, returns a character test (or a single char). */
  private escape(inClass: boolean): Node | CharTest | string {
    const c = this.s[this.i++];
    if (c === undefined) throw this.error('bad escape (end of pattern)');
    const tests: Record<string, CharTest> = { d: isDigit, D: (x) => !isDigit(x), w: isWord, W: (x) => !isWord(x), s: isSpace, S: (x) => !isSpace(x) };
    if (c in tests) return inClass ? tests[c] : { t: 'char', test: tests[c] };
    if (!inClass) {
      if (c === 'A') return { t: 'assert', kind: 'start' };
      if (c === 'Z') return { t: 'assert', kind: 'endStrict' };
      if (c === 'b') return { t: 'assert', kind: 'word' };
      if (c === 'B') return { t: 'assert', kind: 'notWord' };
      if (/[1-9]/.test(c)) throw this.error('backreferences are not supported');
    }
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', f: '\f', v: '\v', a: '\x07', ...(inClass ? { b: '\b' } : {}) };
    let ch: string;
    if (c in simple) ch = simple[c];
    else if (c === 'x' || c === 'u' || c === 'U') {
      const n = c === 'x' ? 2 : c === 'u' ? 4 : 8;
      const hex = this.s.slice(this.i, this.i + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) throw this.error(`incomplete escape \\${c}${hex}`);
      this.i += n;
      ch = String.fromCodePoint(parseInt(hex, 16));
    } else if (c === '0') ch = '\0';
    else if (/[A-Za-z0-9]/.test(c)) throw this.error(`bad escape \\${c}`);
    else ch = c;
    if (inClass) return ch;
    return this.literal(ch);
  }

  private charClass(): Node {
    const negate = this.s[this.i] === '^';
    if (negate) this.i++;
    const parts: CharTest[] = [];
    let first = true;
    for (;;) {
      if (this.i >= this.s.length) throw this.error('unterminated character set');
      let c = this.s[this.i];
      if (c === ']' && !first) {
        this.i++;
        break;
      }
      first = false;
      this.i++;
      let lo: string | CharTest = c;
      if (c === '\\') lo = this.escape(true) as string | CharTest;
      else if (c === '[' && this.s[this.i] === ':') throw this.error('POSIX classes are not supported');
      if (typeof lo === 'string' && this.s[this.i] === '-' && this.s[this.i + 1] !== ']' && this.i + 1 < this.s.length) {
        this.i++;
        c = this.s[this.i++];
        let hi: string | CharTest = c;
        if (c === '\\') hi = this.escape(true) as string | CharTest;
        if (typeof hi !== 'string') throw this.error('bad character range');
        const a = lo.codePointAt(0) as number;
        const b = hi.codePointAt(0) as number;
        if (a > b) throw this.error(`bad character range ${lo}-${hi}`);
        parts.push(this.ignoreCase ? (x) => [x, x.toLowerCase(), x.toUpperCase()].some((y) => (y.codePointAt(0) as number) >= a && (y.codePointAt(0) as number) <= b) : (x) => (x.codePointAt(0) as number) >= a && (x.codePointAt(0) as number) <= b);
      } else if (typeof lo === 'string') {
        const one = lo;
        parts.push(this.ignoreCase ? (x) => x.toLowerCase() === one.toLowerCase() : (x) => x === one);
      } else parts.push(lo);
    }
    return { t: 'char', test: (x) => parts.some((p) => p(x)) !== negate };
  }
}

type State =
  | { k: 'char'; test: CharTest; out: number }
  | { k: 'split'; a: number; b: number }
  | { k: 'assert'; kind: 'start' | 'end' | 'endStrict' | 'word' | 'notWord'; out: number }
  | { k: 'match' };

/** A Thompson NFA, simulated breadth-first: each character is read once. */
class Nfa implements Matcher {
  private readonly states: State[] = [];
  private readonly start: number;

  constructor(ast: Node) {
    const end = this.add({ k: 'match' });
    this.start = this.build(ast, end);
  }

  private add(s: State): number {
    if (this.states.length >= MAX_STATES) throw new PatternError(`the pattern expands to more than ${MAX_STATES} states (large repeat counts)`);
    this.states.push(s);
    return this.states.length - 1;
  }

  /** States for `node`, continuing to `next`; returns the entry state. */
  private build(node: Node, next: number): number {
    switch (node.t) {
      case 'char':
        return this.add({ k: 'char', test: node.test, out: next });
      case 'assert':
        return this.add({ k: 'assert', kind: node.kind, out: next });
      case 'seq': {
        let entry = next;
        for (let j = node.items.length - 1; j >= 0; j--) entry = this.build(node.items[j], entry);
        return entry;
      }
      case 'alt': {
        const entries = node.options.map((o) => this.build(o, next));
        return entries.reduceRight((b, a) => this.add({ k: 'split', a, b }));
      }
      case 'rep': {
        let entry = next;
        if (node.max === Infinity) {
          // x*: a split that loops back through x.
          const loop = this.add({ k: 'split', a: -1, b: next });
          (this.states[loop] as { a: number }).a = this.build(node.node, loop);
          entry = loop;
        } else {
          // x{0,n} as nested optionals: each may take x and go on, or stop at `next`.
          for (let j = node.min; j < node.max; j++) entry = this.add({ k: 'split', a: this.build(node.node, entry), b: next });
        }
        for (let j = 0; j < node.min; j++) entry = this.build(node.node, entry);
        return entry;
      }
    }
  }

  matches(text: string): boolean {
    const chars = Array.from(text);
    let current = this.closure([this.start], chars, 0);
    for (let pos = 0; pos < chars.length; pos++) {
      const next: number[] = [];
      for (const s of current) {
        const st = this.states[s];
        if (st.k === 'char' && st.test(chars[pos])) next.push(st.out);
      }
      if (next.length === 0) return false;
      current = this.closure(next, chars, pos + 1);
    }
    return current.some((s) => this.states[s].k === 'match');
  }

  /** Every state reachable from `seeds` without reading a character, at position `pos`. */
  private closure(seeds: number[], chars: string[], pos: number): number[] {
    const seen = new Set<number>();
    const out: number[] = [];
    const stack = [...seeds];
    while (stack.length > 0) {
      const s = stack.pop() as number;
      if (seen.has(s)) continue;
      seen.add(s);
      const st = this.states[s];
      if (st.k === 'split') stack.push(st.b, st.a);
      else if (st.k === 'assert') {
        if (assertion(st.kind, chars, pos)) stack.push(st.out);
      } else out.push(s);
    }
    return out;
  }
}

function assertion(kind: 'start' | 'end' | 'endStrict' | 'word' | 'notWord', chars: string[], pos: number): boolean {
  if (kind === 'start') return pos === 0;
  // Python's $ also matches before a final newline.
  if (kind === 'end') return pos === chars.length || (pos === chars.length - 1 && chars[pos] === '\n');
  if (kind === 'endStrict') return pos === chars.length;
  const before = pos > 0 && isWord(chars[pos - 1]);
  const after = pos < chars.length && isWord(chars[pos]);
  return kind === 'word' ? before !== after : before === after;
}
