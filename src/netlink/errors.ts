import { getSystemErrorName } from 'util';

/** A failed rtnetlink operation. `code` is the errno name ("EEXIST", "ENODEV", ...). */
export class NetlinkError extends Error {
  readonly errno: number | undefined;
  constructor(
    readonly code: string,
    message: string,
    errno?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'NetlinkError';
    this.errno = errno;
  }

  /** From a positive errno: message is "<what>: <CODE>". */
  static fromErrno(what: string, errno: number): NetlinkError {
    const code = errnoName(errno);
    return new NetlinkError(code, `${what}: ${code}`, errno);
  }
}

export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `E${Math.abs(errno)}`;
  }
}

export function isCode(err: unknown, ...codes: string[]): boolean {
  return err instanceof NetlinkError && codes.includes(err.code);
}
