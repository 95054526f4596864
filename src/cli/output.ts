/**
 * What the CLI prints and how it fails: aligned tables, JSON, and the one place that turns
 * an error into "weavets: <message>" plus an exit code.
 */
/** Bad command line: exit status 2. */
export class UsageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UsageError';
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Columns separated by two spaces, padded to the widest cell; no trailing blanks. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

export function warn(text: string): void {
  process.stderr.write(`weavets: ${text}\n`);
}

export function debugEnabled(argv: readonly string[]): boolean {
  if (process.env['WEAVETS_DEBUG'] === '1') return true;
  const i = argv.indexOf('--log-level');
  return argv.includes('--log-level=debug') || (i >= 0 && argv[i + 1] === 'debug');
}

/** Print an error the way every command does and return the exit status. */
export function reportError(err: unknown, debug: boolean): number {
  if (err instanceof ExitStatus) return err.status;
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`weavets: ${message.split('\n')[0]}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
  if (err instanceof UsageError) return EXIT_USAGE;
  return EXIT_FAILURE;
}

/** Thrown after a command has already told the user what went wrong: just exit. */
export class ExitStatus extends Error {
  constructor(readonly status: number) {
    super(`exit status ${status}`);
    this.name = 'ExitStatus';
  }
}
