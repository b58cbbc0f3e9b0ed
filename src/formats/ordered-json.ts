/**
 * JSON parsing that keeps the order of object keys as written. JavaScript objects list
 * integer-like keys (`"0"`, `"2"`) before the others whatever the text says, but PEFT's
 * `rank_pattern` is a Python dict whose first matching key wins, in file order: a pattern
 * `{ "mlp.0": 4, "0": 8 }` must try `mlp.0` first.
 */

/** A parsed JSON document with the written key order of each of its objects. */
export interface OrderedJson {
  value: unknown;
  /** The keys of `object` (one of the parsed objects) in the order the text gives them. */
  keysOf(object: object): string[];
}

const NUMBER_OR_LITERAL = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;

/** Parse JSON text (throws JSON.parse's own error on invalid input). */
export function parseOrderedJson(text: string): OrderedJson {
  const value = JSON.parse(text) as unknown; // validates, and gives the usual error messages
  const orders = new WeakMap<object, string[]>();
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const readString = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const read = (): unknown => {
    skipSpace();
    const c = text[i];
    if (c === '{') {
      i++;
      const object: Record<string, unknown> = {};
      const keys: string[] = [];
      skipSpace();
      if (text[i] === '}') {
        i++;
      } else {
        for (;;) {
          skipSpace();
          const key = readString();
          skipSpace();
          i++; // ':'
          // defineProperty: a "__proto__" key is data, never the prototype.
          Object.defineProperty(object, key, { value: read(), enumerable: true, writable: true, configurable: true });
          if (!keys.includes(key)) keys.push(key);
          skipSpace();
          if (text[i++] === '}') break; // else ','
        }
      }
      orders.set(object, keys);
      return object;
    }
    if (c === '[') {
      i++;
      const array: unknown[] = [];
      skipSpace();
      if (text[i] === ']') {
        i++;
        return array;
      }
      for (;;) {
        array.push(read());
        skipSpace();
        if (text[i++] === ']') break;
      }
      return array;
    }
    if (c === '"') return readString();
    NUMBER_OR_LITERAL.lastIndex = i;
    const m = NUMBER_OR_LITERAL.exec(text) as RegExpExecArray;
    i += m[0].length;
    return JSON.parse(m[0]) as unknown;
  };
  const ordered = read();
  void value;
  return {
    value: ordered,
    keysOf: (object) => orders.get(object) ?? Object.keys(object),
  };
}
