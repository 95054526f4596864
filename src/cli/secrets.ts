/**
 * Getting the network password into the daemon without it touching argv, logs or the
 * environment of anything we start: from a root-only file, or from WEAVETS_PASSWORD
 * (taken out of our own environment at once and handed to the daemon over a pipe).
 */
import * as fs from 'node:fs';
import { UsageError } from './output';

export const PASSWORD_ENV = 'WEAVETS_PASSWORD';

function clean(raw: Buffer, where: string): Buffer {
  let end = raw.length;
  while (end > 0 && (raw[end - 1] === 0x0a || raw[end - 1] === 0x0d)) end--;
  if (end === 0) throw new UsageError(`the network password in ${where} is empty`);
  return Buffer.from(raw.subarray(0, end));
}

/** Read a password file that only root can read; refuse anything looser. */
export function readPasswordFile(file: string): Buffer {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    throw new UsageError(
      `--password-file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
      { cause: err },
    );
  }
  if (!st.isFile()) throw new UsageError(`--password-file ${file}: not a regular file`);
  if (st.uid !== 0)
    throw new UsageError(
      `--password-file ${file}: must be owned by root (it is owned by uid ${st.uid}); chown root ${file}`,
    );
  if ((st.mode & 0o077) !== 0) {
    throw new UsageError(
      `--password-file ${file}: readable by group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}`,
    );
  }
  return clean(fs.readFileSync(file), file);
}

/** Take the password out of the environment (so no child ever inherits it). */
export function takePasswordFromEnv(env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  const value = env[PASSWORD_ENV];
  delete env[PASSWORD_ENV];
  if (value === undefined) return undefined;
  return clean(Buffer.from(value, 'utf8'), PASSWORD_ENV);
}

/** Read the password the launching CLI wrote to an inherited pipe, then close it. */
export function readPasswordFd(fd: number): Buffer {
  return clean(readInheritedFd(fd), `file descriptor ${fd}`);
}

/** Everything written to an inherited pipe until the writer closed it; the fd is closed after. */
export function readInheritedFd(fd: number): Buffer {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(4096);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw err;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  fs.closeSync(fd);
  return Buffer.concat(chunks);
}
