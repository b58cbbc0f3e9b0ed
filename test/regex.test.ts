import { describe, expect, it } from 'vitest';
import { PatternError, compilePythonPattern } from '../src/core/regex.js';
import { Rng } from '../src/util/random.js';

// The linear-time matcher for PEFT's Python patterns: equal to a backtracking engine on the
// syntax both share, fast on patterns that make backtracking explode, and explicit about
// what it refuses.

/** A random pattern over a small alphabet, using only syntax JavaScript and Python read alike. */
function randomPattern(rng: Rng, depth = 0): string {
  const atoms = ['a', 'b', '.', '\\d', '[ab]', '[^a]', '\\.', '1', '[a-c1]', '\\w'];
  const parts: string[] = [];
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) {
    let atom = depth < 2 && rng.uniform() < 0.3 ? `(${randomPattern(rng, depth + 1)}${rng.uniform() < 0.4 ? `|${randomPattern(rng, depth + 1)}` : ''})` : atoms[rng.int(atoms.length)];
    const q = rng.int(8);
    if (q === 0) atom += '*';
    else if (q === 1) atom += '+';
    else if (q === 2) atom += '?';
    else if (q === 3) atom += `{${rng.int(2)},${1 + rng.int(2)}}`;
    else if (q === 4) atom += `{${1 + rng.int(2)}}`;
    parts.push(atom);
  }
  return parts.join('');
}

describe('Python patterns in linear time', () => {
  it('agrees with a backtracking engine on 3,000 random patterns × 20 names', () => {
    const rng = new Rng(1);
    const alphabet = ['a', 'b', '1', '.', 'c'];
    let checked = 0;
    for (let p = 0; p < 3000; p++) {
      const pattern = randomPattern(rng);
      const ours = compilePythonPattern(pattern);
      const reference = new RegExp(`^(?:${pattern})$`, 'u');
      for (let s = 0; s < 20; s++) {
        const name = Array.from({ length: rng.int(7) }, () => alphabet[rng.int(alphabet.length)]).join('');
        expect(ours.matches(name), `${pattern} on ${JSON.stringify(name)}`).toBe(reference.test(name));
        checked++;
      }
    }
    expect(checked).toBe(60_000);
  });

  it("reads Python's own syntax: named groups, \\A \\Z, {,n}, lazy quantifiers, (?i), $ before a final newline", () => {
    const yes = (p: string, s: string) => expect(compilePythonPattern(p).matches(s), `${p} on ${JSON.stringify(s)}`).toBe(true);
    const no = (p: string, s: string) => expect(compilePythonPattern(p).matches(s), `${p} on ${JSON.stringify(s)}`).toBe(false);
    yes('(?P<layer>fc\\d+)', 'fc12');
    yes('\\Afc1\\Z', 'fc1');
    yes('a{,2}b', 'aab');
    no('a{,2}b', 'aaab');
    yes('.*?proj', 'q_proj');
    yes('(?i)FC1', 'fc1');
    no('fc1$', 'fc1\n'); // a whole match must consume the newline (re.fullmatch)
    yes('fc1$\\n', 'fc1\n'); // but $ does match before a final newline
    no('fc1\\Z\\n', 'fc1\n');
    no('.', '\n');
    yes('(?s).', '\n');
    yes('a{b', 'a{b'); // not a quantifier: a literal brace, as in Python
    yes('\\bfc\\b.1', 'fc.1');
    yes('[\\w.]+', 'mlp.fc1');
    yes('\\x41\\u00e9', 'Aé');
    yes('\\d+', '٣'); // Python 3's \d is Unicode
  });

  it('takes linear time on patterns that make backtracking engines explode', () => {
    const evil = ['(.*.*)*z', '(a|aa)*c', '(a+)+b', '((a*)*)*b', '(.*a){12}x'];
    const name = `model.layers.0.mlp.${'a'.repeat(200)}`;
    for (const p of evil) {
      const t0 = performance.now();
      expect(compilePythonPattern(p).matches(name)).toBe(false);
      expect(performance.now() - t0, p).toBeLessThan(250);
    }
  });

  it('refuses what it cannot run in linear time, and malformed patterns, saying what', () => {
    const refuses = (p: string, message: RegExp) => expect(() => compilePythonPattern(p), p).toThrow(message);
    refuses('(a)\\1', /backreferences are not supported/);
    refuses('(?P<x>a)(?P=x)', /backreferences are not supported/);
    refuses('fc(?=1)', /lookahead and lookbehind are not supported/);
    refuses('(?<!x)fc', /lookahead and lookbehind are not supported/);
    refuses('(?>a)', /atomic groups are not supported/);
    refuses('a*+', /possessive quantifiers are not supported/);
    refuses('(a', /missing \), unterminated subpattern/);
    refuses('a)', /unbalanced parenthesis/);
    refuses('[a', /unterminated character set/);
    refuses('*a', /nothing to repeat/);
    refuses('\\q', /bad escape \\q/);
    refuses('a{3,2}', /min repeat greater than max repeat/);
    refuses('(a{1000}){1000}', /more than 20000 states/);
    refuses('x'.repeat(5000), /at most 4096 are accepted/);
    expect(() => compilePythonPattern('(')).toThrow(PatternError);
  });
});
