/**
 * Why the sleeve dropped a datagram or a frame: the `reason` label of
 * `weavets_dropped_datagrams_total`. The list is closed and docs/PROTOCOL.md ("Receiving")
 * names exactly these (test/unit/sleeve-drops.test.ts compares the two).
 */

/** Errno codes a UDP send may fail with that get a label of their own; others count as `send_error`. */
const SEND_ERRNOS = [
  'EMSGSIZE',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'ECONNREFUSED',
  'EPERM',
  'EACCES',
  'EADDRNOTAVAIL',
  'EINVAL',
  'EIO',
  'EBADF',
] as const;
/** Errno codes a TAP write may fail with that get a label of their own; others count as `bridge_error`. */
const BRIDGE_ERRNOS = ['EIO', 'EINVAL', 'EBADF', 'EBADFD', 'ENOMEM', 'EFAULT'] as const;

type SendErrno = (typeof SEND_ERRNOS)[number];
type BridgeErrno = (typeof BRIDGE_ERRNOS)[number];

/** Reasons found in a datagram's bytes (codec.ts). */
export const MALFORMED_REASONS = [
  'short',
  'bad_magic',
  'bad_version',
  'bad_kind',
  'bad_flags',
  'bad_length',
  'truncated',
] as const;
export type MalformedReason = (typeof MALFORMED_REASONS)[number];

export const DROP_REASONS = [
  ...MALFORMED_REASONS,
  // who sent it, and what it asks for
  'unknown_peer',
  'wrong_address',
  'not_for_us',
  'looped',
  'hops_exceeded',
  'no_route',
  'unknown_network',
  'reassembly_gap',
  // sealing
  'forged',
  'replayed',
  'bad_epoch',
  'unsealed',
  'unexpected_sealed',
  // the kernel refused to take it
  'send_queue_full',
  'bridge_queue_full',
  ...SEND_ERRNOS.map((e) => `send_${e}` as const),
  'send_error',
  ...BRIDGE_ERRNOS.map((e) => `bridge_${e}` as const),
  'bridge_error',
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The label for a UDP send that threw `err`. */
export function sendErrorReason(err: unknown): DropReason {
  const code = errnoOf(err);
  return (SEND_ERRNOS as readonly (string | undefined)[]).includes(code) ? `send_${code as SendErrno}` : 'send_error';
}

/** The label for a TAP write that threw `err`. */
export function bridgeErrorReason(err: unknown): DropReason {
  const code = errnoOf(err);
  return (BRIDGE_ERRNOS as readonly (string | undefined)[]).includes(code)
    ? `bridge_${code as BridgeErrno}`
    : 'bridge_error';
}

/** Drop counts by reason; every part of the sleeve counts into one. */
export class DropCounter {
  private readonly counts = new Map<DropReason, number>();

  count(reason: DropReason, n = 1): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + n);
  }

  get(reason: DropReason): number {
    return this.counts.get(reason) ?? 0;
  }

  /** The live map, for /metrics. */
  all(): ReadonlyMap<DropReason, number> {
    return this.counts;
  }
}
