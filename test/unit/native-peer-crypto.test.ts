/**
 * NativePeerCrypto (native/src/peer_crypto.c) against PeerCrypto, the reference: every
 * scenario drives a TS and a native instance with the same keys through the same calls
 * and expects byte-identical sealed units, identical open results and identical buffers
 * after each open.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  PeerCrypto,
  PREVIOUS_KEY_GRACE_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_MS,
  SEAL_UNIT_OVERHEAD,
  type DataCrypto,
  type OpenResult,
} from '../../src/datapath/sleeve/peer-crypto';
import { NativePeerCrypto } from '../../src/datapath/sleeve/native-peer-crypto';
import { peerCryptoBinding } from '../../src/native/peer-crypto';
import { sodiumSealer } from '../../src/crypto/seal';

const sealer = sodiumSealer();

/** One end of a path in both implementations, checked against each other on every call. */
class Twin {
  readonly ts: PeerCrypto;
  readonly native: NativePeerCrypto;

  constructor(keys: { send: Buffer; recv: Buffer }, now = 0) {
    this.ts = new PeerCrypto(sealer, { send: Buffer.from(keys.send), recv: Buffer.from(keys.recv) }, now);
    this.native = new NativePeerCrypto(keys, now);
  }

  /** Seals msg with both; the two units must be the same bytes. */
  seal(msg: Buffer, now: number): Buffer {
    const units = [this.ts, this.native].map((c: DataCrypto) => {
      const unit = Buffer.alloc(SEAL_UNIT_OVERHEAD + msg.length);
      msg.copy(unit, SEAL_UNIT_OVERHEAD);
      c.sealInPlace(unit, SEAL_UNIT_OVERHEAD, msg.length, now);
      return unit;
    });
    expect(units[1]!.equals(units[0]!), 'native sealed other bytes').toBe(true);
    this.sameEpoch();
    return units[0]!;
  }

  /** Opens a copy of unit with each; same answer and same bytes after. Returns the answer and the TS copy. */
  open(unit: Buffer, now: number, off = 0, len = unit.length): { result: OpenResult; buf: Buffer } {
    const a = Buffer.from(unit);
    const b = Buffer.from(unit);
    const result = this.ts.openInPlace(a, off, len, now);
    expect(this.native.openInPlace(b, off, len, now)).toBe(result);
    if (result === 'ok') expect(b.equals(a), 'native opened to other bytes').toBe(true);
    else expect(b.equals(unit), 'native changed a refused unit').toBe(true);
    this.sameEpoch();
    return { result, buf: a };
  }

  heartbeatSent(seq: number): void {
    this.ts.heartbeatSent(seq);
    this.native.heartbeatSent(seq);
  }

  heartbeatAcked(seq: number): void {
    this.ts.heartbeatAcked(seq);
    this.native.heartbeatAcked(seq);
  }

  get epoch(): { send: number; recv: number } {
    return this.ts.epoch;
  }

  private sameEpoch(): void {
    expect(this.native.epoch).toEqual(this.ts.epoch);
  }
}

/** Both ends of a session: a's send key is b's receive key and the other way round. */
function session(now = 0): { a: Twin; b: Twin } {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  return { a: new Twin({ send: k1, recv: k2 }, now), b: new Twin({ send: k2, recv: k1 }, now) };
}

/** a seals a heartbeat, b opens it, a hears the answer: the peer proved it opens a's epoch. */
function heartbeatRoundTrip(a: Twin, b: Twin, seq: number, now: number): void {
  const hb = a.seal(Buffer.from([1, seq & 0xff]), now);
  a.heartbeatSent(seq);
  expect(b.open(hb, now).result).toBe('ok');
  a.heartbeatAcked(seq);
}

function setCounter(unit: Buffer, counter: bigint): void {
  unit.writeBigUInt64BE(counter, 1);
}

describe('NativePeerCrypto matches PeerCrypto', () => {
  it('a fresh session, both ways, every message size', () => {
    const { a, b } = session();
    for (const size of [0, 1, 15, 16, 17, 100, 1400, 9000, 65000]) {
      for (const [from, to] of [
        [a, b],
        [b, a],
      ] as const) {
        const msg = randomBytes(size);
        const unit = from.seal(msg, 5);
        const { result, buf } = to.open(unit, 5);
        expect(result).toBe('ok');
        expect(buf.subarray(SEAL_UNIT_OVERHEAD).equals(msg)).toBe(true);
      }
    }
  });

  it('seals at an offset inside a larger buffer and opens there', () => {
    const { a, b } = session();
    const msg = randomBytes(300);
    const bufs = [a.ts, a.native].map((c: DataCrypto) => {
      const buf = Buffer.alloc(1000, 0xee);
      msg.copy(buf, 100);
      c.sealInPlace(buf, 100, msg.length, 0);
      return buf;
    });
    expect(bufs[1]!.equals(bufs[0]!)).toBe(true);
    // Bytes outside [75, 400) untouched.
    expect(bufs[1]!.subarray(0, 75).every((x) => x === 0xee)).toBe(true);
    expect(bufs[1]!.subarray(400).every((x) => x === 0xee)).toBe(true);
    const { result, buf } = b.open(bufs[0]!, 0, 75, 325);
    expect(result).toBe('ok');
    expect(buf.subarray(100, 400).equals(msg)).toBe(true);
  });

  it('many messages, delivered out of order within the window', () => {
    const { a, b } = session();
    const units: Buffer[] = [];
    for (let i = 0; i < 3000; i++) units.push(a.seal(randomBytes(i % 200), i));
    // Deliver in blocks of 64, each block reversed.
    for (let i = 0; i < units.length; i += 64) {
      for (const u of units.slice(i, i + 64).reverse()) expect(b.open(u, 3000).result).toBe('ok');
    }
    for (const u of units.slice(-10)) expect(b.open(u, 3000).result).toBe('replayed');
  });

  it('rekeys by time, past epoch 0 only after a heartbeat sealed in the current epoch was answered', () => {
    const { a, b } = session();
    expect(b.open(a.seal(Buffer.from('epoch 0'), 0), 0).result).toBe('ok');
    a.seal(Buffer.from('still 0'), REKEY_AFTER_MS - 1);
    expect(a.epoch.send).toBe(0);
    // Epoch 0 needs no proof: both ends have its key from the handshake.
    const t1 = REKEY_AFTER_MS;
    expect(b.open(a.seal(Buffer.from('epoch 1'), t1), t1).result).toBe('ok');
    expect(a.epoch.send).toBe(1);
    // Time is up again but nothing proved the peer opens epoch 1: no rekey.
    a.seal(Buffer.from('still 1'), t1 + REKEY_AFTER_MS + 1);
    expect(a.epoch.send).toBe(1);
    // A heartbeat sent but not answered: still none.
    const hb = a.seal(Buffer.from('hb'), t1 + REKEY_AFTER_MS + 2);
    a.heartbeatSent(7);
    a.seal(Buffer.from('still 1'), t1 + REKEY_AFTER_MS + 3);
    expect(a.epoch.send).toBe(1);
    // An answer echoing another sequence number does not count.
    a.heartbeatAcked(8);
    a.seal(Buffer.from('still 1'), t1 + REKEY_AFTER_MS + 4);
    expect(a.epoch.send).toBe(1);
    expect(b.open(hb, t1 + REKEY_AFTER_MS + 5).result).toBe('ok');
    a.heartbeatAcked(7);
    const t2 = t1 + REKEY_AFTER_MS + 6;
    const next = a.seal(Buffer.from('epoch 2'), t2);
    expect(a.epoch.send).toBe(2);
    expect(next[0]).toBe(2);
    expect(b.open(next, t2).result).toBe('ok');
    // The answer came before the time is up: the rekey waits for the time.
    heartbeatRoundTrip(a, b, 9, t2 + 1);
    a.seal(Buffer.from('still 2'), t2 + REKEY_AFTER_MS - 1);
    expect(a.epoch.send).toBe(2);
    a.seal(Buffer.from('epoch 3'), t2 + REKEY_AFTER_MS);
    expect(a.epoch.send).toBe(3);
  });

  it('heartbeat sequence numbers compare modulo 2^32', () => {
    const { a, b } = session();
    expect(b.open(a.seal(Buffer.from('epoch 1'), REKEY_AFTER_MS), REKEY_AFTER_MS).result).toBe('ok');
    for (const seq of [0xfffffffe, 0xffffffff, 0, 1]) {
      a.seal(Buffer.from([seq & 0xff]), REKEY_AFTER_MS);
      a.heartbeatSent(seq);
    }
    const later = 2 * REKEY_AFTER_MS;
    a.heartbeatAcked(0xfffffffd); // before the range
    expect(a.seal(Buffer.from('x'), later)[0]).toBe(1);
    a.heartbeatAcked(2); // after it
    expect(a.seal(Buffer.from('x'), later)[0]).toBe(1);
    a.heartbeatAcked(0); // inside it, across the wrap
    const unit = a.seal(Buffer.from('x'), later);
    expect(unit[0]).toBe(2);
    expect(b.open(unit, later).result).toBe('ok');
  });

  it('the receiver follows to the next epoch; the previous key opens for 30 s and not after', () => {
    const { a, b } = session();
    heartbeatRoundTrip(a, b, 1, 0);
    const old1 = a.seal(Buffer.from('in flight 1'), 10);
    const old2 = a.seal(Buffer.from('in flight 2'), 11);
    const switchAt = REKEY_AFTER_MS + 100;
    const next = a.seal(Buffer.from('new epoch'), switchAt);
    expect(next[0]).toBe(1);
    expect(b.open(next, switchAt).result).toBe('ok');
    expect(b.epoch.recv).toBe(1);
    expect(b.open(old1, switchAt + PREVIOUS_KEY_GRACE_MS - 1).result).toBe('ok');
    expect(b.open(old2, switchAt + PREVIOUS_KEY_GRACE_MS).result).toBe('bad_epoch');
    // A refused unit moved nothing: it still opens if it could (it cannot: grace is over).
    expect(b.open(old2, switchAt + PREVIOUS_KEY_GRACE_MS + 1).result).toBe('bad_epoch');
    expect(b.epoch.recv).toBe(1);
  });

  it('follows the chain past 256 epochs (the wire epoch wraps)', () => {
    const { a, b } = session();
    let t = 0;
    for (let seq = 1; seq <= 300; seq++, t += REKEY_AFTER_MS) heartbeatRoundTrip(a, b, seq, t);
    expect(a.epoch.send).toBe(299 & 0xff);
    expect(b.epoch.recv).toBe(299 & 0xff);
  });

  it('bad_epoch for a unit two epochs ahead, and for an epoch claimed by a forger', () => {
    const { a, b } = session();
    // Epoch 1 needs no proof; then a hears an "answer" to a heartbeat b never saw (an
    // attacker cannot forge one, but it puts a two epochs ahead of b).
    a.seal(Buffer.from('hb'), REKEY_AFTER_MS);
    a.heartbeatSent(2);
    a.heartbeatAcked(2);
    const twoAhead = a.seal(Buffer.from('epoch 2'), 2 * REKEY_AFTER_MS);
    expect(twoAhead[0]).toBe(2);
    expect(b.open(twoAhead, 2 * REKEY_AFTER_MS).result).toBe('bad_epoch');
    const back = Buffer.from(twoAhead);
    back[0] = 0xff; // previous epoch, but b has no previous key
    expect(b.open(back, 2 * REKEY_AFTER_MS).result).toBe('bad_epoch');
  });

  it('refuses replays: the same unit again, and one older than the window', () => {
    const { a, b } = session();
    const units: Buffer[] = [];
    for (let i = 0; i < 4200; i++) units.push(a.seal(Buffer.from([i & 0xff]), 0));
    expect(b.open(units[100]!, 0).result).toBe('ok');
    expect(b.open(units[100]!, 0).result).toBe('replayed');
    expect(b.open(units[4199]!, 0).result).toBe('ok');
    // Window 4096: with 4199 the highest, 104 is the oldest remembered, 103 too old.
    expect(b.open(units[103]!, 0).result).toBe('replayed');
    expect(b.open(units[104]!, 0).result).toBe('ok');
    expect(b.open(units[104]!, 0).result).toBe('replayed');
    expect(b.open(units[4150]!, 0).result).toBe('ok');
  });

  it('a forged tag, body or prefix is refused and leaves the buffer as it was', () => {
    const { a, b } = session();
    const good = a.seal(randomBytes(64), 0);
    for (const at of [0, 1, 8, 9, 24, 25, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x01;
      // open() itself checks that the native side left a refused unit unchanged.
      expect(['forged', 'bad_epoch']).toContain(b.open(bad, 0).result);
    }
    expect(b.open(good, 0).result).toBe('ok');
  });

  it('a counter above 2^53 is forged (checked before the replay window)', () => {
    const { a, b } = session();
    const unit = a.seal(Buffer.from('x'), 0);
    for (const counter of [2n ** 53n + 2n, 2n ** 60n, 2n ** 64n - 1n]) {
      const bad = Buffer.from(unit);
      setCounter(bad, counter);
      expect(b.open(bad, 0).result).toBe('forged');
    }
    expect(b.open(unit, 0).result).toBe('ok');
  });

  it('units shorter than prefix + tag are forged', () => {
    const { a, b } = session();
    const unit = a.seal(Buffer.alloc(0), 0);
    expect(unit.length).toBe(SEAL_UNIT_OVERHEAD);
    for (let len = 0; len < SEAL_UNIT_OVERHEAD; len++) expect(b.open(unit, 0, 0, len).result).toBe('forged');
    expect(b.open(unit, 0).result).toBe('ok');
  });

  it('a random mix of everything, both ways (fixed seed)', () => {
    let seed = 0x5eed;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const { a, b } = session();
    const ends = [
      { me: a, other: b, sent: [] as Buffer[], seq: 0 },
      { me: b, other: a, sent: [] as Buffer[], seq: 0 },
    ];
    let now = 0;
    for (let step = 0; step < 6000; step++) {
      const e = ends[rand(2)]!;
      const op = rand(100);
      if (op < 45) e.sent.push(e.me.seal(randomBytes(rand(80)), now));
      else if (op < 75 && e.sent.length > 0) {
        // Deliver a recent or an old one (duplicates and stale ones included).
        const i = rand(10) < 8 ? e.sent.length - 1 - rand(Math.min(e.sent.length, 50)) : rand(e.sent.length);
        e.other.open(e.sent[i]!, now);
      } else if (op < 80 && e.sent.length > 0) {
        const bad = Buffer.from(e.sent[rand(e.sent.length)]!);
        bad[rand(bad.length)]! ^= 1 << rand(8);
        e.other.open(bad, now);
      } else if (op < 88) {
        e.seq = (e.seq + 1) >>> 0;
        const hb = e.me.seal(Buffer.from('hb'), now);
        e.me.heartbeatSent(e.seq);
        if (rand(4) > 0 && e.other.open(hb, now).result === 'ok') e.me.heartbeatAcked(e.seq - rand(2));
      } else if (op < 89) {
        // Thousands of datagrams lost in one go: the receiver's window jumps.
        const scratch = Buffer.alloc(SEAL_UNIT_OVERHEAD);
        for (let i = rand(5000); i > 0; i--) {
          e.me.ts.sealInPlace(scratch, SEAL_UNIT_OVERHEAD, 0, now);
          e.me.native.sealInPlace(scratch, SEAL_UNIT_OVERHEAD, 0, now);
        }
        e.sent.push(e.me.seal(Buffer.from('after a gap'), now));
      } else now += rand(3) === 0 ? rand(60_000) : rand(1000);
    }
    expect(a.epoch.send + b.epoch.send).toBeGreaterThan(0);
  });

  it('rekeys after REKEY_AFTER_MESSAGES datagrams (count set through the test hook)', () => {
    const { a, b } = session();
    heartbeatRoundTrip(a, b, 1, 0);
    (a.ts as unknown as { sendEpochMessages: number }).sendEpochMessages = REKEY_AFTER_MESSAGES - 2;
    peerCryptoBinding().peerCryptoSetEpochMessagesForTest(a.native.handle, REKEY_AFTER_MESSAGES - 2);
    expect(a.seal(Buffer.from('x'), 1)[0]).toBe(0);
    expect(a.seal(Buffer.from('x'), 1)[0]).toBe(0);
    const next = a.seal(Buffer.from('x'), 1);
    expect(next[0]).toBe(1);
    expect(b.open(next, 1).result).toBe('ok');
  });
});

describe('NativePeerCrypto argument checks', () => {
  const key = randomBytes(32);
  const native = peerCryptoBinding();

  it('keys: Buffers of 32 bytes; time: a finite number', () => {
    expect(() => new NativePeerCrypto({ send: randomBytes(31), recv: key }, 0)).toThrow(RangeError);
    expect(() => new NativePeerCrypto({ send: key, recv: randomBytes(33) }, 0)).toThrow(RangeError);
    expect(() => new NativePeerCrypto({ send: 'k' as unknown as Buffer, recv: key }, 0)).toThrow(TypeError);
    expect(() => new NativePeerCrypto({ send: key, recv: key }, '0' as unknown as number)).toThrow(TypeError);
    expect(() => new NativePeerCrypto({ send: key, recv: key }, NaN)).toThrow(RangeError);
  });

  it('the handle must be one peerCryptoCreate made', () => {
    for (const h of [{}, null, undefined, 1, Buffer.alloc(8)]) {
      expect(() => native.peerCryptoEpoch(h as never)).toThrow(TypeError);
      expect(() => native.peerCryptoSeal(h as never, Buffer.alloc(64), 25, 1, 0)).toThrow(TypeError);
      expect(() => native.peerCryptoOpen(h as never, Buffer.alloc(64), 0, 30, 0)).toThrow(TypeError);
      expect(() => native.peerCryptoHeartbeatSent(h as never, 1)).toThrow(TypeError);
    }
  });

  it('seal: msgOff >= 25 and the message inside the buffer; nothing written otherwise', () => {
    const c = new NativePeerCrypto({ send: key, recv: key }, 0);
    const buf = Buffer.alloc(100, 0xaa);
    expect(() => c.sealInPlace(buf, 24, 10, 0)).toThrow(RangeError);
    expect(() => c.sealInPlace(buf, 25, 76, 0)).toThrow(RangeError);
    expect(() => c.sealInPlace(buf, 2 ** 32, 0, 0)).toThrow(RangeError);
    expect(() => c.sealInPlace(buf, 25.5, 1, 0)).toThrow(RangeError);
    expect(() => c.sealInPlace(buf, -1, 1, 0)).toThrow(RangeError);
    expect(() => c.sealInPlace('buf' as unknown as Buffer, 25, 1, 0)).toThrow(TypeError);
    expect(() => c.sealInPlace(buf, 25, 1, Infinity)).toThrow(RangeError);
    expect(buf.every((x) => x === 0xaa)).toBe(true);
    // The failed calls used no counter: the first seal is counter 0.
    c.sealInPlace(buf, 25, 75, 0);
    expect(buf.readBigUInt64BE(1)).toBe(0n);
  });

  it('open: the unit inside the buffer', () => {
    const c = new NativePeerCrypto({ send: key, recv: key }, 0);
    const buf = Buffer.alloc(100);
    expect(() => c.openInPlace(buf, 0, 101, 0)).toThrow(RangeError);
    expect(() => c.openInPlace(buf, 90, 11, 0)).toThrow(RangeError);
    expect(() => c.openInPlace(buf, -1, 30, 0)).toThrow(RangeError);
    expect(() => c.openInPlace(buf, 0, 30, NaN)).toThrow(RangeError);
    expect(c.openInPlace(buf, 100, 0, 0)).toBe('forged');
  });

  it('heartbeat sequence numbers are u32', () => {
    const c = new NativePeerCrypto({ send: key, recv: key }, 0);
    expect(() => c.heartbeatSent(-1)).toThrow(RangeError);
    expect(() => c.heartbeatSent(2 ** 32)).toThrow(RangeError);
    expect(() => c.heartbeatAcked(1.5)).toThrow(RangeError);
    c.heartbeatSent(2 ** 32 - 1);
    c.heartbeatAcked(0);
  });
});
