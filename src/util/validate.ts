/**
 * Argument checks shared by every public entry point. Each throws before anything is
 * allocated, with a message naming the argument, the value received and what was expected.
 */

/** Render a received value for an error message: short, whatever it is (long arrays, cycles, huge strings). */
export function describe(value: unknown): string {
  let out: string;
  try {
    out = render(value, new Set(), 0);
  } catch {
    // A Proxy's traps or a throwing getter must not replace the caller's message with theirs.
    return 'a value that cannot be inspected';
  }
  return out.length > MAX_TOTAL ? `${out.slice(0, MAX_TOTAL)}…` : out;
}

/** Nested values multiply: the whole description is bounded too. */
const MAX_TOTAL = 400;

const MAX_ITEMS = 8;
const MAX_CHARS = 80;

function render(value: unknown, seen: Set<unknown>, depth: number): string {
  if (typeof value === 'string') {
    const s = value.length > MAX_CHARS ? `${value.slice(0, MAX_CHARS)}…` : value;
    return value.length > MAX_CHARS ? `${JSON.stringify(s)} (${value.length} characters)` : JSON.stringify(s);
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) {
    if (seen.has(value)) return '[circular]';
    if (depth > 3) return `[${value.length} entries]`;
    seen.add(value);
    const head = value.slice(0, MAX_ITEMS).map((v) => render(v, seen, depth + 1));
    seen.delete(value);
    return value.length > MAX_ITEMS ? `[${head.join(', ')}, … (${value.length} entries)]` : `[${head.join(', ')}]`;
  }
  if (value !== null && typeof value === 'object') {
    const t = value as { shape?: unknown; dtype?: unknown; isDisposed?: unknown };
    if (Array.isArray(t.shape) && typeof t.dtype === 'string') {
      const shape = t.shape.length > MAX_ITEMS ? `${t.shape.slice(0, MAX_ITEMS).join(', ')}, …` : t.shape.join(', ');
      // The usual case reads plainly; only a surprising dtype or a disposed tensor is called out.
      const kind = [t.isDisposed === true ? 'disposed' : '', t.dtype === 'float32' ? '' : t.dtype].filter(Boolean).join(' ');
      return kind === '' ? `a tensor of shape [${shape}]` : `${/^[aeiou]/.test(kind) ? 'an' : 'a'} ${kind} tensor of shape [${shape}]`;
    }
    if (Array.isArray(t.shape)) return `a tensor of shape [${t.shape.slice(0, MAX_ITEMS).join(', ')}]`;
    let proto: unknown;
    let keys: string[];
    try {
      // A Proxy or an exotic object can throw from any of these: a message must still come out.
      proto = Object.getPrototypeOf(value);
      keys = proto === Object.prototype || proto === null ? Object.keys(value) : [];
    } catch {
      return 'an object that cannot be inspected';
    }
    if (proto === Object.prototype || proto === null) {
      if (seen.has(value)) return '[circular]';
      if (depth > 3) return `{${keys.length} field${keys.length === 1 ? '' : 's'}}`;
      seen.add(value);
      const head = keys.slice(0, MAX_ITEMS).map((k) => `${fieldName(k)}: ${fieldValue(value, k, seen, depth)}`);
      seen.delete(value);
      if (keys.length === 0) return '{}';
      return keys.length > MAX_ITEMS ? `{ ${head.join(', ')}, … (${keys.length} fields) }` : `{ ${head.join(', ')} }`;
    }
    const name = (proto as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    // "an Int32Array", "a Uint8Array": the article follows the sound, and U is read "you".
    return typeof name === 'string' && name !== '' ? `${/^[AEIO]/.test(name) ? 'an' : 'a'} ${name.slice(0, MAX_CHARS)}` : 'an object';
  }
  return String(value);
}

function fieldName(k: string): string {
  const short = k.length > MAX_CHARS ? `${k.slice(0, MAX_CHARS)}…` : k;
  return /^[A-Za-z_$][\w$]*$/.test(short) ? short : JSON.stringify(short);
}

/** A field's value without running a getter (which could throw or have side effects). */
function fieldValue(obj: object, k: string, seen: Set<unknown>, depth: number): string {
  try {
    const d = Object.getOwnPropertyDescriptor(obj, k);
    if (d === undefined) return 'undefined';
    if (!('value' in d)) return '[getter]';
    return render(d.value, seen, depth + 1);
  } catch {
    return '[unreadable]';
  }
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

/** Layer sizes such as [512, 2048, 2048, 128]: at least two positive integers. */
export function checkDims(where: string, dims: unknown): number[] {
  if (!Array.isArray(dims) || dims.length < 2 || dims.length > 10_000 || !dims.every((d) => Number.isSafeInteger(d) && d > 0)) {
    invalid(where, 'dims', dims, 'an array of 2 to 10,000 positive integers (input, hidden…, output)');
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

/**
 * Throw unless `value` is a live float32 tensor of the given shape (null entries: any
 * size). Disposed, int32, string and wrongly shaped tensors are all refused here, before
 * anything reads them.
 */
export function checkFloatTensor(where: string, name: string, value: unknown, shape: readonly (number | null)[]): void {
  const t = value as { shape?: unknown; dtype?: unknown; isDisposed?: unknown; rank?: unknown } | null;
  const expected = `a live float32 tensor of shape [${shape.map((d) => d ?? 'n').join(', ')}]`;
  const isTensor = t !== null && typeof t === 'object' && Array.isArray(t.shape) && typeof t.dtype === 'string';
  if (!isTensor || t.isDisposed === true || t.dtype !== 'float32') invalid(where, name, value, expected);
  const s = t.shape as number[];
  if (s.length !== shape.length || !s.every((d, i) => shape[i] === null || d === shape[i])) invalid(where, name, value, expected);
}

/** Throw unless `value` is a live tensor (any dtype or shape): what every forward pass checks first. */
export function checkLiveTensor(where: string, name: string, value: unknown, expected: string): void {
  const t = value as { shape?: unknown; dtype?: unknown; isDisposed?: unknown } | null;
  const isTensor = t !== null && typeof t === 'object' && Array.isArray(t.shape) && typeof t.dtype === 'string';
  if (!isTensor || t.isDisposed === true) invalid(where, name, value, expected);
}

/**
 * Adapter names: non-empty strings of at most 256 characters, without control characters
 * or surrounding spaces (they become file-name parts and PEFT state-dict key parts).
 */
export function checkAdapterName(where: string, name: string, value: unknown): string {
  const ok = typeof value === 'string' && value.length > 0 && value.length <= 256 && value.trim() === value && !/[\u0000-\u001f\u007f]/.test(value);
  if (!ok) invalid(where, name, value, 'a non-empty adapter name (at most 256 characters, no control characters, no spaces at either end)');
  return value as string;
}

/** Throw unless `value` is undefined or an object (options arguments: `null` is refused, not read). */
export function checkOptions(where: string, name: string, value: unknown, expected = 'an options object'): void {
  if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value))) invalid(where, name, value, expected);
}

/** Target fields where null means "none" (PEFT writes None there). */
const NULLABLE_FIELDS = new Set(['targetModules', 'excludeModules', 'rankPattern', 'alphaPattern', 'modulesToSave']);

/**
 * Refuse a field set to null: it is not read as "the default" (leave the field out for that),
 * so a null that stands for a missing value is reported, not silently replaced.
 */
export function checkNoNullFields(where: string, options: object): void {
  for (const [k, v] of Object.entries(options)) {
    if (v === null && !NULLABLE_FIELDS.has(k)) invalid(where, k, null, 'a value (leave the field out for its default)');
  }
}
