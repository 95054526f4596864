/**
 * Errors from the crypto primitives. The router maps these to a refused connection (and
 * a log line naming the code); none of them carries key material in its message.
 */
export type CryptoErrorCode =
  /** An input has the wrong size or an offset/length is out of range (a caller bug). */
  | 'EWEAVETS_CRYPTO_BAD_LENGTH'
  /** A peer's share is the identity or a low-order point: the key would not be secret. */
  | 'EWEAVETS_CRYPTO_LOW_ORDER'
  /** An input is outside what the protocol allows (e.g. a 64 KiB password). */
  | 'EWEAVETS_CRYPTO_BAD_INPUT'
  /** The native module was asked for explicitly and cannot be loaded. */
  | 'EWEAVETS_CRYPTO_UNAVAILABLE';

export class CryptoError extends Error {
  constructor(
    readonly code: CryptoErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CryptoError';
  }
}
