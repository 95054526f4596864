/**
 * Errors that cross a boundary (API, CLI, later CNI and Docker) carry a stable code.
 * Each surface maps codes to its own format in one place. An error raised because of
 * another keeps it as `cause` (the message says what failed in our terms; the cause
 * keeps the original errno, stack and code for logs and debugging).
 */
export type WeavetsErrorCode =
  | 'EWEAVETS_BAD_REQUEST'
  | 'EWEAVETS_NOT_FOUND'
  | 'EWEAVETS_CONFLICT'
  | 'EWEAVETS_RANGE_EXHAUSTED'
  | 'EWEAVETS_NOT_RUNNING'
  | 'EWEAVETS_ALREADY_RUNNING'
  | 'EWEAVETS_RANGE_CONFLICT'
  | 'EWEAVETS_STORE_UNAVAILABLE'
  | 'EWEAVETS_POLICY_INVALID'
  | 'EWEAVETS_STATE_INVALID'
  | 'EWEAVETS_INTERNAL';

export class WeavetsError extends Error {
  constructor(
    readonly code: WeavetsErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'WeavetsError';
  }
}

/** HTTP status for an error code, used by the API server. */
export function httpStatusOf(code: WeavetsErrorCode): number {
  switch (code) {
    case 'EWEAVETS_BAD_REQUEST':
    case 'EWEAVETS_POLICY_INVALID':
      return 400;
    case 'EWEAVETS_NOT_FOUND':
      return 404;
    case 'EWEAVETS_CONFLICT':
    case 'EWEAVETS_ALREADY_RUNNING':
    case 'EWEAVETS_RANGE_CONFLICT':
      return 409;
    case 'EWEAVETS_RANGE_EXHAUSTED':
      return 507;
    case 'EWEAVETS_NOT_RUNNING':
    case 'EWEAVETS_STORE_UNAVAILABLE':
      return 503;
    case 'EWEAVETS_STATE_INVALID':
    case 'EWEAVETS_INTERNAL':
      return 500;
  }
}
