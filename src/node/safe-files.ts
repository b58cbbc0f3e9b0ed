import { closeSync, constants, fstatSync, fsyncSync, lstatSync, mkdirSync, openSync, readSync, readlinkSync, renameSync, rmdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * Files written so that nothing is ever lost, and read so that nothing hangs.
 *
 * Writing: each file goes to a temporary file in the same folder, is flushed to disk
 * (fsync) and renamed over its target, so a reader sees the old file or the new one,
 * never half of either. Only the named files change: subfolders, symlinks and any other
 * file in the folder stay as they were. Several files are renamed one after another; a
 * crash between two renames leaves the first new and the rest old, which callers detect
 * (adapter weights record a digest of their config).
 *
 * Reading: only regular files (a FIFO would block forever, `/dev/zero` never ends), of at
 * most a given size, read through one descriptor so the checks and the read see the same file.
 */

/** Test hooks: called after each rename, so a test can simulate a crash between them. */
export interface WriteHooks {
  afterRename?: (file: string) => void;
}

/** A file-system failure, in the library's words (the cause keeps the system error). */
export class FileError extends Error {
  readonly code: string | undefined;
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'FileError';
    this.code = (cause as NodeJS.ErrnoException | undefined)?.code;
  }
}

function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const hints: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device',
    ENOTDIR: 'a part of the path is a file, not a folder',
    EISDIR: 'it is a folder',
    EEXIST: 'it already exists',
    ENOENT: 'no such file or folder',
    ELOOP: 'too many symbolic links',
    ENAMETOOLONG: 'the name is too long',
  };
  if (e?.code !== undefined && hints[e.code] !== undefined) return `${hints[e.code]} (${e.code})`;
  if (e?.code !== undefined && /^E[A-Z]+$/.test(e.code)) return e.code;
  return String(e?.message ?? err);
}

/** One folder's files for {@link replaceFilesIn}. */
export interface FolderWrite {
  dir: string;
  files: ReadonlyArray<readonly [string, string | Uint8Array]>;
}

/**
 * Write `files` (name → bytes) into folder `dir`, each replaced atomically, in the order
 * given. Creates `dir` (and its parents) when missing. On a failure before the first
 * rename nothing has changed: temporary files are removed, and so are folders it created.
 */
export function replaceFiles(where: string, dir: string, files: ReadonlyArray<readonly [string, string | Uint8Array]>, hooks: WriteHooks = {}): void {
  replaceFilesIn(where, [{ dir, files }], hooks);
}

/**
 * {@link replaceFiles} for several folders at once, in two phases: every file of every
 * folder is first written (and flushed) beside its target, then all are renamed in order.
 * A failure in the first phase (a read-only folder, a full disk) leaves everything as it
 * was: the temporary files and the folders created are removed, and the error says that
 * nothing was written. Only a failure between renames (which the checks before make
 * unlikely: same folder, target a file or nothing) leaves some files new; its error names them.
 */
export function replaceFilesIn(where: string, writes: readonly FolderWrite[], hooks: WriteHooks = {}): void {
  for (const { dir, files } of writes) {
    if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) throw new Error(`${where}: dir = ${JSON.stringify(dir)} is invalid; expected a folder path`);
    for (const [name] of files) {
      if (typeof name !== 'string' || name === '' || name !== basename(name) || name === '.' || name === '..' || name.includes('\0')) throw new Error(`${where}: file name ${JSON.stringify(name)} is invalid`);
    }
  }
  // Every target is checked before anything is created or written.
  const kinds = writes.map(({ dir, files }) => {
    const kind = statKind(dir, where);
    if (kind !== null && kind !== 'folder') throw new FileError(`${where}: cannot write into ${dir}: it is a ${kind}, not a folder; nothing was written`);
    if (kind === null) {
      const link = danglingLink(dir);
      if (link !== null) throw new FileError(`${where}: cannot write into ${dir}: it is a symbolic link to ${link}, which does not exist; nothing was written`);
    }
    for (const [name] of files) {
      const k = statKind(join(dir, name), where);
      if (k !== null && k !== 'file') throw new FileError(`${where}: cannot write ${join(dir, name)}: it is a ${k}; remove it or choose another folder; nothing was written`);
    }
    return kind;
  });

  const created: string[] = [];
  const stamp = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const temps: Array<{ temp: string; target: string }> = [];
  let renamed = 0;
  try {
    writes.forEach(({ dir, files }, i) => {
      if (kinds[i] === null) created.push(...createFolders(where, dir));
      for (const [name, content] of files) {
        const temp = join(dir, `.${name}.tmp-${stamp}`);
        writeDurably(where, temp, content);
        temps.push({ temp, target: join(dir, name) });
      }
    });
    for (const { temp, target } of temps) {
      try {
        renameSync(temp, target);
      } catch (err) {
        const done = temps.slice(0, renamed).map((t) => t.target);
        throw new FileError(`${where}: cannot replace ${target}: ${reason(err)}; ${done.length === 0 ? 'nothing was written' : `already replaced: ${done.join(', ')}`}`, err);
      }
      renamed++;
      hooks.afterRename?.(target);
    }
  } catch (err) {
    for (const { temp } of temps.slice(renamed)) tryUnlink(temp);
    if (renamed === 0) for (const d of created.reverse()) tryRmdir(d);
    if (renamed === 0 && err instanceof FileError && !err.message.endsWith('nothing was written')) {
      throw new FileError(`${err.message}; nothing was written`, (err as Error & { cause?: unknown }).cause);
    }
    throw err;
  }
  for (const dir of new Set(writes.map((w) => w.dir))) syncFolder(dir);
}

/** The kind of what is at `path` (following symlinks), or null when nothing is. */
export function statKind(path: string, where?: string): 'file' | 'folder' | 'FIFO' | 'device' | 'socket' | 'special file' | null {
  try {
    const s = statSync(path);
    if (s.isFile()) return 'file';
    if (s.isDirectory()) return 'folder';
    if (s.isFIFO()) return 'FIFO';
    if (s.isCharacterDevice() || s.isBlockDevice()) return 'device';
    if (s.isSocket()) return 'socket';
    return 'special file';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ENOTDIR') return null;
    throw new FileError(`${where === undefined ? '' : `${where}: `}cannot inspect ${path}: ${reason(err)}`, err);
  }
}

/**
 * The bytes of a regular file of at most `maxBytes`, or null when nothing is at `path`.
 * Anything else (a folder, FIFO, device, socket, or a larger file) is refused before
 * reading. Opened non-blocking so that a FIFO swapped in cannot hang the open.
 */
export function readRegularFile(where: string, path: string, maxBytes: number): Uint8Array | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw new FileError(`${where}: cannot read ${path}: ${reason(err)}`, err);
  }
  try {
    const s = fstatSync(fd);
    if (!s.isFile()) {
      const kind = s.isDirectory() ? 'folder' : s.isFIFO() ? 'FIFO' : s.isCharacterDevice() || s.isBlockDevice() ? 'device' : 'special file';
      throw new FileError(`${where}: ${path} is a ${kind}, not a regular file`);
    }
    if (s.size > maxBytes) throw new FileError(`${where}: ${path} is ${s.size.toLocaleString('en-US')} bytes, more than the ${maxBytes.toLocaleString('en-US')}-byte limit for this file`);
    const out = new Uint8Array(s.size);
    let at = 0;
    while (at < out.length) {
      const n = readSync(fd, out, at, out.length - at, at);
      if (n === 0) throw new FileError(`${where}: ${path} shrank while it was being read (${at} of ${out.length} bytes)`);
      at += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

function writeDurably(where: string, path: string, content: string | Uint8Array): void {
  const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content;
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  } catch (err) {
    throw new FileError(`${where}: cannot write into ${dirname(path)}: ${reason(err)}`, err);
  }
  try {
    let at = 0;
    while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    tryUnlink(path);
    throw new FileError(`${where}: cannot write ${path}: ${reason(err)}`, err);
  }
  closeSync(fd);
}

/**
 * Create `dir` and any missing parents, one at a time (Node's recursive mkdir loops forever
 * where a parent cannot be created, e.g. under /proc); returns the folders it created,
 * outermost first. On a failure, the folders it created are removed again.
 */
function createFolders(where: string, dir: string): string[] {
  const missing: string[] = [];
  let d = resolve(dir);
  while (statKind(d, where) === null) {
    missing.unshift(d);
    const parent = dirname(d);
    if (parent === d) break;
    d = parent;
  }
  const created: string[] = [];
  for (const m of missing) {
    try {
      mkdirSync(m);
    } catch (err) {
      for (const c of [...created].reverse()) tryRmdir(c);
      const at = m === resolve(dir) ? '' : ` (at ${m})`;
      throw new FileError(`${where}: cannot create the folder ${dir}${at}: ${reason(err)}`, err);
    }
    created.push(m);
  }
  return created;
}

/** The target of the symbolic link at `path` when that target does not exist, else null. */
function danglingLink(path: string): string | null {
  try {
    return lstatSync(path).isSymbolicLink() ? readlinkSync(path) : null;
  } catch {
    return null;
  }
}

function syncFolder(dir: string): void {
  // Makes the renames durable; some file systems refuse fsync on a folder, which is harmless.
  try {
    const fd = openSync(dir, constants.O_RDONLY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* best effort */
  }
}

function tryUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}

function tryRmdir(path: string): void {
  try {
    rmdirSync(path);
  } catch {
    /* not empty or gone: leave it */
  }
}
