/**
 * Structured, levelled logging: one logger per component, one JSON-free line per event
 * ("2026-11-23T17:52:12.123Z info router: connected to 7e:21:... addr=192.0.2.2:6783").
 * Never pass secrets in fields: there is no redaction layer to save you.
 *
 * Where lines go: the daemon writes to stdout. In the foreground that is journald's (or
 * the terminal's); a background launch points the daemon's stdout and stderr at
 * weavets.log in the state dir, and then CappedFileSink keeps that file under
 * --log-max-size by rotation, so no flood of events can fill the disk.
 */
import * as fs from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(component: string): Logger;
}

export interface LogSink {
  write(line: string): void;
}

export function createLogger(level: LogLevel, sink: LogSink = process.stderr, component = 'weavets'): Logger {
  const min = ORDER[level];
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields): void => {
    if (ORDER[lvl] < min) return;
    let line = `${new Date().toISOString()} ${lvl} ${component}: ${msg}`;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        const s = String(v);
        line += ` ${k}=${/[\s"=]/.test(s) ? JSON.stringify(s) : s}`;
      }
    }
    sink.write(line + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (c) => createLogger(level, sink, c),
  };
}

/** A logger that drops everything, for unit tests of components that log. */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};

/** Rotated copies kept beside a capped log: weavets.log.1 (newest) .. weavets.log.2. */
export const LOG_ROTATED_FILES = 2;
/** The default --log-max-size: 10 MiB per file, so at most 30 MiB with the rotated copies. */
export const DEFAULT_LOG_MAX_SIZE = 10 * 1024 * 1024;

/**
 * Lines to a file descriptor that is a regular file (the daemon's stdout in a background
 * launch), rotated when the file reaches `maxBytes`: the file is copied to `path.1`
 * (older copies shift up to `path.<LOG_ROTATED_FILES>`, the oldest is dropped) and then
 * truncated in place ("copytruncate"). Truncating rather than renaming matters: the
 * same file is also the process's stderr, opened with O_APPEND by the launcher, so a
 * crash's stack trace still lands in the current file after a rotation. Writes are
 * synchronous (as process.stdout's are for files), so a line is never half in one copy.
 * Never throws: a log that cannot be written or rotated must not take the daemon down.
 */
export class CappedFileSink implements LogSink {
  private size: number;
  private rotating = false;

  constructor(
    private readonly fd: number,
    private readonly path: string,
    private readonly maxBytes: number,
  ) {
    this.size = CappedFileSink.sizeOf(fd);
  }

  /**
   * A sink for `fd` when it is a regular file (its path from /proc/self/fd) and a cap is
   * set; undefined for pipes, terminals and journald sockets, which need no cap here.
   */
  static forFd(fd: number, maxBytes: number): CappedFileSink | undefined {
    if (maxBytes <= 0) return undefined;
    try {
      if (!fs.fstatSync(fd).isFile()) return undefined;
      const path = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (!path.startsWith('/') || path.endsWith(' (deleted)')) return undefined;
      return new CappedFileSink(fd, path, maxBytes);
    } catch {
      return undefined;
    }
  }

  private static sizeOf(fd: number): number {
    try {
      return fs.fstatSync(fd).size;
    } catch {
      return 0;
    }
  }

  write(line: string): void {
    const bytes = Buffer.byteLength(line);
    if (this.size + bytes > this.maxBytes && !this.rotating) {
      // Other writers to the same file (stderr) are not counted: look before rotating.
      this.size = CappedFileSink.sizeOf(this.fd);
      if (this.size + bytes > this.maxBytes && this.size > 0) this.rotate();
    }
    try {
      fs.writeSync(this.fd, line);
      this.size += bytes;
    } catch {
      // Disk full or fd gone: drop the line rather than the daemon.
    }
  }

  private rotate(): void {
    this.rotating = true;
    try {
      for (let i = LOG_ROTATED_FILES; i > 1; i--) {
        try {
          fs.renameSync(`${this.path}.${i - 1}`, `${this.path}.${i}`);
        } catch {
          // No such copy yet.
        }
      }
      fs.copyFileSync(this.path, `${this.path}.1`);
      fs.chmodSync(`${this.path}.1`, 0o600);
      fs.ftruncateSync(this.fd, 0);
      this.size = 0;
    } catch {
      // Could not rotate (disk full?): truncate anyway, so the cap holds.
      try {
        fs.ftruncateSync(this.fd, 0);
        this.size = 0;
      } catch {
        // Nothing more to do.
      }
    } finally {
      this.rotating = false;
    }
  }
}

/** "10M", "512K", "1G" or plain bytes; 0 turns the cap off. */
export function parseLogSize(text: string): number | undefined {
  const m = /^(\d+)([KMG]?)(i?B)?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) ? n : undefined;
}
