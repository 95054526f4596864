/**
 * Typed face of native/src/peer_crypto.c: the data path's per-peer sealing state held in
 * C, so the sleeve's express path (C) and its JS slow path share one state per peer. The
 * class built on it is NativePeerCrypto (src/datapath/sleeve/native-peer-crypto.ts).
 *
 * The addon is the same file src/native/index.ts loads (require() caches it, so it is
 * loaded once whichever module asks first); this module stays separate so the TAP/UDP
 * face does not grow crypto.
 */
import * as path from 'path';

/** The handle object peerCryptoCreate returns: opaque, it only carries the C state. */
export interface NativePeerCryptoHandle {
  readonly __brand?: 'weavets peer crypto';
}

/** peerCryptoOpen's answers (WEAVETS_OPEN_* in native/src/peer_crypto.h). */
export const OPEN_OK = 0;
export const OPEN_FORGED = 1;
export const OPEN_REPLAYED = 2;
export const OPEN_BAD_EPOCH = 3;

export interface PeerCryptoBinding {
  peerCryptoCreate(sendKey: Buffer, recvKey: Buffer, nowMs: number): NativePeerCryptoHandle;
  peerCryptoSeal(h: NativePeerCryptoHandle, buf: Buffer, msgOff: number, msgLen: number, nowMs: number): void;
  peerCryptoOpen(h: NativePeerCryptoHandle, buf: Buffer, off: number, len: number, nowMs: number): number;
  peerCryptoHeartbeatSent(h: NativePeerCryptoHandle, seq: number): void;
  peerCryptoHeartbeatAcked(h: NativePeerCryptoHandle, seq: number): void;
  peerCryptoEpoch(h: NativePeerCryptoHandle): [send: number, recv: number];
  /** Tests only: set the count of datagrams sealed in the current send epoch. */
  peerCryptoSetEpochMessagesForTest(h: NativePeerCryptoHandle, messages: number): void;
}

// Same relative path from src/native (tsx, vitest) and dist/native (compiled), as index.ts.
const ADDON_PATH = path.join(__dirname, '../../native/build/Release/weavets_native.node');

let binding: PeerCryptoBinding | undefined;

/** Loaded on first use, so importing this module never fails on a machine without the build. */
export function peerCryptoBinding(): PeerCryptoBinding {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a native addon loads by path, only through require()
  binding ??= require(ADDON_PATH) as PeerCryptoBinding;
  return binding;
}
