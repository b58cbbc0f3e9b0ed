import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Write a file so that readers see the old content or the new, never a half-written one:
 * write a temporary sibling, then rename it over the target (atomic on one filesystem).
 */
export function writeFileAtomic(path: string, content: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, content);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Move a finished file into place atomically (same filesystem). */
export function moveAtomic(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  renameSync(from, to);
}

/**
 * Put a finished folder in place of `to` (same filesystem): the old folder is renamed aside,
 * the new one renamed in, then the old one removed. Readers see the old folder or the new
 * one (for the instant between the two renames, none), never a half-written one; when the
 * second rename fails, the old folder is put back.
 */
export function replaceDir(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  const old = join(dirname(to), `.${basename(to)}.${process.pid}.${Date.now()}.old`);
  let moved = false;
  try {
    renameSync(to, old);
    moved = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  try {
    renameSync(from, to);
  } catch (err) {
    if (moved) renameSync(old, to);
    throw err;
  }
  if (moved) rmSync(old, { recursive: true, force: true });
}
