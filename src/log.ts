/**
 * Structured, levelled logging: one logger per component, one JSON-free line per event
 * ("2026-11-23T17:52:12.123Z info router: connected to 7e:21:... addr=192.0.2.2:6783").
 * Never pass secrets in fields: there is no redaction layer to save you.
 */
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
