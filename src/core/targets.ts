import { type Matcher, PatternError, compilePythonPattern } from './regex.js';
import { describe, invalid } from '../util/validate.js';

/**
 * Which layers an adapter targets, and with which rank and alpha: PEFT's rules, in one
 * place, as pure functions of module names (PyTorch-style dotted paths such as `fc1`,
 * `mlp.fc1` or `0`). Ported from peft 0.21 so that an `adapter_config.json` means the same
 * thing here as in PyTorch:
 * - `target_modules` as a list: a module is targeted when its name equals an entry or ends
 *   with `.entry`; as a string: a regex that must match the whole name (`re.fullmatch`);
 *   `'all-linear'`: every linear layer.
 * - `exclude_modules`: the same two forms, applied first.
 * - `modules_to_save`: a module whose name (or a parent's) ends with an entry is trained in
 *   full instead; LoRA never targets it.
 * - `rank_pattern` / `alpha_pattern`: the first key (in order) that matches the end of the
 *   name at a dot boundary, as the regex `(.*\.)?(key)$`, gives the value.
 */

/** `target_modules` / `exclude_modules`: names (suffix match) or one regex (full match). */
export type ModuleSelector = readonly string[] | string;

/** The PEFT vocabulary of what an adapter covers (camelCase of `LoraConfig`'s fields). */
export interface TargetSpec {
  /** Layers to adapt (default: every linear layer). `'all-linear'` is PEFT's shorthand for that. */
  targetModules?: ModuleSelector;
  /** Layers never to adapt, even when `targetModules` matches them. */
  excludeModules?: ModuleSelector;
  /** Per-layer rank: `{ pattern: rank }`, first matching key wins. */
  rankPattern?: Readonly<Record<string, number>>;
  /** Per-layer alpha: `{ pattern: alpha }`, first matching key wins. */
  alphaPattern?: Readonly<Record<string, number>>;
  /** Layers trained in full (a trainable copy per adapter) instead of through LoRA. */
  modulesToSave?: readonly string[];
}

/** PEFT's shorthand for every linear layer. */
export const ALL_LINEAR = 'all-linear';

/**
 * A Python `re` pattern (as PEFT writes it into `wrap`) compiled for whole-name matching by
 * lora-tfjs's linear-time engine (`regex.ts`): an adapter file's pattern can never hang a
 * load. A pattern it cannot compile, or a feature it refuses, is an error naming the field.
 */
export function pythonRegex(where: string, field: string, pattern: string, wrap: (source: string) => string): Matcher {
  if (typeof pattern !== 'string') invalid(where, field, pattern, 'a string (a Python regular expression)');
  const source = wrap(pattern);
  const cached = compiled.get(source);
  if (cached !== undefined) return cached;
  try {
    const matcher = compilePythonPattern(source);
    if (compiled.size >= 256) compiled.clear(); // patterns are matched against every layer: compile each once
    compiled.set(source, matcher);
    return matcher;
  } catch (err) {
    if (!(err instanceof PatternError)) throw err;
    return invalid(where, field, pattern, `a regular expression lora-tfjs can match (${err.message})`);
  }
}

const compiled = new Map<string, Matcher>();

// PEFT: re.fullmatch(target_modules, key), and re.match(rf"(.*\.)?({key})$", name) for patterns.
const fullMatch = (s: string): string => s;
const suffixAtDot = (s: string): string => `(.*\\.)?(${s})$`;

function matchesSelector(where: string, field: string, selector: ModuleSelector, name: string): boolean {
  if (typeof selector === 'string') return pythonRegex(where, field, selector, fullMatch).matches(name);
  return selector.some((entry) => name === entry || name.endsWith(`.${entry}`));
}

/** PEFT's `modules_to_save` rule: the module or one of its parents ends with an entry. */
export function isModuleToSave(name: string, modulesToSave: readonly string[] | undefined | null): boolean {
  if (modulesToSave == null || modulesToSave.length === 0) return false;
  const parts = name.split('.');
  for (let i = 1; i <= parts.length; i++) {
    const path = parts.slice(0, i).join('.');
    if (modulesToSave.some((m) => path.endsWith(m))) return true;
  }
  return false;
}

/** A `rank_pattern` / `alpha_pattern`: an object, or its entries in the order they were written. */
export type Pattern = Readonly<Record<string, number>> | ReadonlyArray<readonly [string, number]>;

/** The value of the first key of `pattern` matching `name` (PEFT's `get_pattern_key`), else `fallback`. */
export function patternValue(where: string, field: string, pattern: Pattern | undefined | null, name: string, fallback: number): number {
  if (pattern == null) return fallback;
  const entries = Array.isArray(pattern) ? (pattern as ReadonlyArray<readonly [string, number]>) : Object.entries(pattern);
  for (const [key, value] of entries) {
    if (pythonRegex(where, `${field} key`, key, suffixAtDot).matches(name)) return value;
  }
  return fallback;
}

/** How one module is covered by an adapter. */
export type ModuleRole = 'lora' | 'full' | null;

/** Check a target spec's shape (types, not names) and name the field that is wrong. */
export function checkTargetSpec(where: string, spec: TargetSpec): void {
  const selector = (field: string, v: unknown) => {
    if (v === undefined || v === null) return;
    if (typeof v === 'string') return void pythonRegex(where, field, v, fullMatch);
    if (!Array.isArray(v) || !v.every((e) => typeof e === 'string' && e !== '')) {
      invalid(where, field, v, 'an array of module names, or one regular expression string');
    }
  };
  selector('targetModules', spec.targetModules);
  selector('excludeModules', spec.excludeModules);
  if (spec.modulesToSave != null && (!Array.isArray(spec.modulesToSave) || !spec.modulesToSave.every((e) => typeof e === 'string' && e !== ''))) {
    invalid(where, 'modulesToSave', spec.modulesToSave, 'an array of module names');
  }
  for (const [field, pattern, integer] of [['rankPattern', spec.rankPattern, true], ['alphaPattern', spec.alphaPattern, false]] as const) {
    if (pattern == null) continue;
    if (typeof pattern !== 'object' || Array.isArray(pattern)) invalid(where, field, pattern, 'an object { pattern: number }');
    for (const [key, value] of Object.entries(pattern)) {
      pythonRegex(where, `${field} key`, key, suffixAtDot);
      const ok = typeof value === 'number' && Number.isFinite(value) && value > 0 && (!integer || Number.isInteger(value));
      if (!ok) invalid(where, `${field}[${JSON.stringify(key)}]`, value, integer ? 'a positive integer' : 'a finite number > 0');
    }
  }
}

/**
 * The role of every module (`lora`, `full` or null) under a spec, PEFT's way. `linear`
 * says which modules `'all-linear'` (and the default, when `targetModules` is absent)
 * covers. Throws, naming the candidates, when the spec selects nothing.
 */
export function resolveRoles(where: string, names: readonly string[], spec: TargetSpec, linear: (name: string) => boolean = () => true): ModuleRole[] {
  checkTargetSpec(where, spec);
  const target = spec.targetModules;
  const allLinear = target === undefined || target === null || (typeof target === 'string' && target.toLowerCase() === ALL_LINEAR);
  const roles = names.map((name): ModuleRole => {
    if (isModuleToSave(name, spec.modulesToSave)) return 'full';
    if (spec.excludeModules != null && matchesSelector(where, 'excludeModules', spec.excludeModules, name)) return null;
    if (allLinear) return linear(name) ? 'lora' : null;
    return matchesSelector(where, 'targetModules', target as ModuleSelector, name) ? 'lora' : null;
  });
  if (!roles.includes('lora') && !roles.includes('full')) {
    const what = spec.targetModules === undefined ? 'the default targets' : `targetModules = ${describe(spec.targetModules)}`;
    throw new Error(`${where}: ${what} match no layer${spec.excludeModules != null ? ` once excludeModules = ${describe(spec.excludeModules)} is applied` : ''}; the layers are ${describe([...names])}`);
  }
  if (spec.modulesToSave != null) {
    const unmatched = spec.modulesToSave.filter((m) => !names.some((n) => isModuleToSave(n, [m])));
    if (unmatched.length > 0) invalid(where, 'modulesToSave', [...spec.modulesToSave], `names of layers (no layer matches ${describe(unmatched)}; the layers are ${describe([...names])})`);
  }
  return roles;
}

/**
 * `rank_pattern` / `alpha_pattern` entries that say exactly `values` for `names` under
 * PEFT's matching, given the default: one key per module that differs, the module's own
 * name with regex characters escaped, anchored at the start when a shorter name would
 * also match another module.
 */
export function exactPattern(names: readonly string[], values: readonly number[], fallback: number): Record<string, number> {
  const entries: Array<[string, number]> = [];
  names.forEach((name, i) => {
    if (values[i] === fallback) return;
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const plain = compilePythonPattern(suffixAtDot(escaped));
    const plainMatchesOthers = names.some((other, j) => j !== i && plain.matches(other));
    entries.push([plainMatchesOthers ? `^${escaped}` : escaped, values[i]]);
  });
  // Object.fromEntries defines own properties, so even a layer named "__proto__" is a key.
  const out: Record<string, number> = Object.fromEntries(entries);
  // The keys are tried in order by PEFT: check the result resolves to exactly the values.
  names.forEach((name, i) => {
    const got = patternValue('exactPattern', 'pattern', out, name, fallback);
    if (got !== values[i]) throw new Error(`exactPattern: internal error, ${name} resolves to ${got} instead of ${values[i]}`);
  });
  return out;
}
