/**
 * Warnings: things that work but that a user should know about (a rank that adds
 * parameters but no capacity, a config field lora-tfjs ignores). They go to one handler,
 * `console.warn` by default, so an app or a test can collect or silence them.
 */

/** Receives each warning as one line of text. */
export type WarningHandler = (message: string) => void;

const consoleWarn: WarningHandler = (message) => console.warn(message);
let handler: WarningHandler = consoleWarn;

/**
 * Route lora-tfjs's warnings to `next` (null restores `console.warn`); returns the previous
 * handler so a caller can put it back.
 */
export function setWarningHandler(next: WarningHandler | null): WarningHandler {
  if (next !== null && typeof next !== 'function') {
    throw new Error(`setWarningHandler: handler = ${String(next)} is invalid; expected a function or null`);
  }
  const previous = handler;
  handler = next ?? consoleWarn;
  return previous;
}

/** Emit a warning through the current handler (or a call's own `onWarning`). */
export function warn(message: string, local?: WarningHandler): void {
  (local ?? handler)(message);
}
