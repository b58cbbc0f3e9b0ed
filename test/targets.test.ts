import { describe, expect, it } from 'vitest';
import { exactPattern, isModuleToSave, patternValue, pythonRegex, resolveRoles } from '../src/core/targets.js';
import { parseOrderedJson } from '../src/formats/ordered-json.js';

// PEFT 0.21's rules (tuners_utils.check_target_module_exists, other.get_pattern_key,
// other._set_trainable), as pure functions of module names. The PEFT suite checks the same
// cases against PEFT itself; these pin the edge cases without Python.

const names = ['fc1', 'fc10', 'fc2', 'mlp.fc1', 'mlp.out', '0', '10'];

describe('target_modules / exclude_modules / modules_to_save, as PEFT matches them', () => {
  it('a list matches a name exactly or as a suffix at a dot, never a bare suffix or prefix', () => {
    expect(resolveRoles('t', names, { targetModules: ['fc1'] })).toEqual(['lora', null, null, 'lora', null, null, null]);
    expect(() => resolveRoles('t', names, { targetModules: ['c1'] })).toThrow(/match no layer/); // "fc1" does not end with ".c1"
    expect(resolveRoles('t', names, { targetModules: ['0'] })).toEqual([null, null, null, null, null, 'lora', null]); // nor "10" with ".0"
  });

  it('a string is a regex matched against the whole name (re.fullmatch)', () => {
    expect(resolveRoles('t', names, { targetModules: 'fc1' })).toEqual(['lora', null, null, null, null, null, null]);
    expect(resolveRoles('t', names, { targetModules: 'fc1\\d*' })).toEqual(['lora', 'lora', null, null, null, null, null]);
    expect(resolveRoles('t', names, { targetModules: '.*fc1' })).toEqual(['lora', null, null, 'lora', null, null, null]);
    expect(resolveRoles('t', names, { targetModules: '(?P<n>\\d+)' })).toEqual([null, null, null, null, null, 'lora', 'lora']); // Python named group
    expect(resolveRoles('t', names, { targetModules: 'ALL-LINEAR' })).toEqual(names.map(() => 'lora'));
  });

  it('exclude_modules wins over target_modules, in both forms', () => {
    expect(resolveRoles('t', names, { targetModules: 'fc.*', excludeModules: ['fc10'] })).toEqual(['lora', null, 'lora', null, null, null, null]);
    expect(resolveRoles('t', names, { targetModules: ['fc1', 'out'], excludeModules: 'mlp\\..*' })).toEqual(['lora', null, null, null, null, null, null]);
    expect(resolveRoles('t', names, { targetModules: 'fc.*', excludeModules: ['c2', '1'] })).toEqual(['lora', 'lora', 'lora', null, null, null, null]); // no bare suffixes
  });

  it('modules_to_save: the name or a parent ends with an entry; such a module is never a LoRA target', () => {
    expect(isModuleToSave('mlp.out', ['out'])).toBe(true);
    expect(isModuleToSave('mlp.out', ['mlp'])).toBe(true); // a parent module
    expect(isModuleToSave('fc10', ['fc1'])).toBe(false);
    expect(isModuleToSave('xfc1', ['fc1'])).toBe(true); // PEFT uses a bare endswith here
    expect(resolveRoles('t', names, { targetModules: ['fc1', 'out'], modulesToSave: ['out'] })).toEqual(['lora', null, null, 'lora', 'full', null, null]);
  });

  it('refuses a spec that selects nothing, naming the candidates, and malformed fields', () => {
    expect(() => resolveRoles('addLoRA', names, { targetModules: ['q_proj'] })).toThrow(
      'addLoRA: targetModules = ["q_proj"] match no layer; the layers are ["fc1", "fc10", "fc2", "mlp.fc1", "mlp.out", "0", "10"]',
    );
    expect(() => resolveRoles('t', names, { targetModules: '(' })).toThrow(/targetModules = "\(" is invalid; expected a regular expression lora-tfjs can match \(missing \), unterminated subpattern at position 1\)/);
    expect(() => resolveRoles('t', names, { targetModules: [''] })).toThrow(/targetModules = \[""\] is invalid/);
    expect(() => resolveRoles('t', names, { modulesToSave: ['head'] })).toThrow(/modulesToSave = \["head"\] is invalid; expected names of layers \(no layer matches \["head"\]/);
    expect(() => resolveRoles('t', names, { rankPattern: { fc1: 0 } })).toThrow('t: rankPattern["fc1"] = 0 is invalid; expected a positive integer');
    expect(() => pythonRegex('t', 'f', '[', (s) => s)).toThrow(/f = "\[" is invalid/);
  });
});

describe('rank_pattern / alpha_pattern (get_pattern_key)', () => {
  it('a key matches the end of the name at a dot boundary: fc1 is not fc10, and mlp.fc1 is fc1', () => {
    const p = { fc1: 3, fc10: 5 };
    expect(['fc1', 'fc10', 'fc2', 'mlp.fc1', 'xfc1'].map((n) => patternValue('t', 'rankPattern', p, n, 8))).toEqual([3, 5, 8, 3, 8]);
    expect(patternValue('t', 'rankPattern', { '^fc1': 2 }, 'mlp.fc1', 8)).toBe(8); // anchored: only the top-level fc1
    expect(patternValue('t', 'rankPattern', { '^fc1': 2 }, 'fc1', 8)).toBe(2);
  });

  it('the first matching key in written order wins, integer-like keys included', () => {
    const { value, keysOf } = parseOrderedJson('{"mlp.0": 4, "0": 8}');
    const entries = keysOf(value as object).map((k) => [k, (value as Record<string, number>)[k]] as const);
    expect(entries.map(([k]) => k)).toEqual(['mlp.0', '0']); // a JS object would list "0" first
    expect(patternValue('t', 'rankPattern', entries, 'mlp.0', 1)).toBe(4);
    expect(patternValue('t', 'rankPattern', value as Record<string, number>, 'mlp.0', 1)).toBe(8); // what object order would give
  });

  it('exactPattern writes keys that resolve to exactly the given values, also for names that are suffixes of others', () => {
    const layerNames = ['fc1', 'mlp.fc1', 'fc10', '0', 'a.0'];
    const values = [2, 6, 4, 8, 3];
    const pattern = exactPattern(layerNames, values, 4);
    expect(pattern).toEqual({ '^fc1': 2, 'mlp\\.fc1': 6, '^0': 8, 'a\\.0': 3 });
    layerNames.forEach((n, i) => expect(patternValue('t', 'p', Object.entries(pattern), n, 4)).toBe(values[i]));
  });
});
