/**
 * Argument checks shared by every public entry point. Each throws before anything is
 * allocated, with a message naming the argument, the value received and what was expected.
 */

/** Render a received value for an error message without dumping whole arrays. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(describe).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    const shape = (value as { shape?: unknown }).shape;
    if (Array.isArray(shape)) return `a tensor of shape [${shape.join(', ')}]`;
    return Object.prototype.toString.call(value);
  }
  return String(value);
}

/** Throw `${where}: ${name} = ${value} is invalid; expected ${expected}`. */
export function invalid(where: string, name: string, value: unknown, expected: string): never {
  throw new Error(`${where}: ${name} = ${describe(value)} is invalid; expected ${expected}`);
}

export function checkPositiveInt(where: string, name: string, value: unknown, max?: number, maxLabel?: string): number {
  const ok = typeof value === 'number' && Number.isInteger(value) && value > 0 && (max === undefined || value <= max);
  if (!ok) {
    const bound = max === undefined ? '' : ` no larger than ${maxLabel ?? String(max)}`;
    invalid(where, name, value, `a positive integer${bound}`);
  }
  return value as number;
}

export function checkPositiveFinite(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    invalid(where, name, value, 'a finite number > 0');
  }
  return value;
}

export function checkProbability(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value >= 1) {
    invalid(where, name, value, 'a number in [0, 1)');
  }
  return value;
}

export function checkInteger(where: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) invalid(where, name, value, 'an integer');
  return value;
}

export function checkOneOf<T extends string>(where: string, name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    invalid(where, name, value, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  }
  return value as T;
}

export function checkShape(where: string, name: string, tensor: unknown, expected: readonly number[]): void {
  const shape = (tensor as { shape?: unknown } | null)?.shape;
  const ok =
    Array.isArray(shape) && shape.length === expected.length && shape.every((d, i) => d === expected[i]);
  if (!ok) invalid(where, name, tensor, `a tensor of shape [${expected.join(', ')}]`);
}

/** Layer sizes such as [512, 2048, 2048, 128]: at least two positive integers. */
export function checkDims(where: string, dims: unknown): number[] {
  if (!Array.isArray(dims) || dims.length < 2 || !dims.every((d) => Number.isInteger(d) && d > 0)) {
    invalid(where, 'dims', dims, 'an array of at least two positive integers (input, hidden…, output)');
  }
  return dims as number[];
}

/**
 * Layer names as PyTorch module paths (`fc1`, `mlp.fc1`, `0`): one per layer, unique,
 * dot-separated non-empty segments. Default: `fc1`, `fc2`, … (the reference's names).
 */
export function checkModuleNames(where: string, names: unknown, count: number): string[] {
  if (names === undefined) return Array.from({ length: count }, (_, i) => `fc${i + 1}`);
  const ok =
    Array.isArray(names) &&
    names.length === count &&
    names.every((n) => typeof n === 'string' && n.length > 0 && n.length <= 256 && n.split('.').every((s) => s.length > 0 && !/\s/.test(s))) &&
    new Set(names).size === names.length;
  if (!ok) invalid(where, 'names', names, `${count} distinct module names, one per layer (PyTorch paths such as "fc1", "mlp.fc1" or "0")`);
  return [...(names as string[])];
}
