import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  PeerCrypto,
  PREVIOUS_KEY_GRACE_MS,
  REKEY_AFTER_MS,
  SEAL_UNIT_OVERHEAD,
} from '../../src/datapath/sleeve/peer-crypto';
import { sodiumSealer, tweetnaclSealer, type Sealer } from '../../src/crypto/seal';

/** Two ends of one direction pair: a's send key is b's receive key and vice versa. */
function pair(sealerA: Sealer, sealerB: Sealer, now = 0): { a: PeerCrypto; b: PeerCrypto } {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  return {
    a: new PeerCrypto(sealerA, { send: k1, recv: k2 }, now),
    b: new PeerCrypto(sealerB, { send: k2, recv: k1 }, now),
  };
}

function sealed(c: PeerCrypto, msg: Buffer, now = 0): Buffer {
  const unit = Buffer.alloc(SEAL_UNIT_OVERHEAD + msg.length);
  msg.copy(unit, SEAL_UNIT_OVERHEAD);
  c.sealInPlace(unit, SEAL_UNIT_OVERHEAD, msg.length, now);
  return unit;
}

describe('data path sealing (PeerCrypto)', () => {
  for (const [name, sa, sb] of [
    ['sodium -> sodium', sodiumSealer(), sodiumSealer()],
    ['sodium -> tweetnacl', sodiumSealer(), tweetnaclSealer()],
    ['tweetnacl -> sodium', tweetnaclSealer(), sodiumSealer()],
  ] as const) {
    it(`round-trips in place (${name})`, () => {
      const { a, b } = pair(sa, sb);
      for (const size of [1, 100, 1400, 65000]) {
        const msg = randomBytes(size);
        const unit = sealed(a, msg);
        expect(unit.subarray(SEAL_UNIT_OVERHEAD).equals(msg)).toBe(false);
        expect(b.openInPlace(unit, 0, unit.length, 0)).toBe('ok');
        expect(unit.subarray(SEAL_UNIT_OVERHEAD).equals(msg)).toBe(true);
      }
    });
  }

  it('refuses a replay, accepts reordering within the window', () => {
    const { a, b } = pair(sodiumSealer(), sodiumSealer());
    const units = [0, 1, 2, 3].map((i) => sealed(a, Buffer.from([i])));
    const copy = Buffer.from(units[2]!);
    expect(b.openInPlace(units[0]!, 0, units[0]!.length, 0)).toBe('ok');
    expect(b.openInPlace(units[2]!, 0, units[2]!.length, 0)).toBe('ok');
    expect(b.openInPlace(units[1]!, 0, units[1]!.length, 0)).toBe('ok');
    expect(b.openInPlace(copy, 0, copy.length, 0)).toBe('replayed');
  });

  it('drops a datagram with any single bit flipped', () => {
    const { a, b } = pair(sodiumSealer(), sodiumSealer());
    const good = sealed(a, randomBytes(64));
    for (let bit = 0; bit < good.length * 8; bit++) {
      const d = Buffer.from(good);
      d[bit >> 3]! ^= 1 << (bit & 7);
      expect(b.openInPlace(d, 0, d.length, 0)).not.toBe('ok');
    }
    expect(b.openInPlace(good, 0, good.length, 0)).toBe('ok');
  });

  it('rekeys on a timer without losing datagrams across the switch', () => {
    const { a, b } = pair(sodiumSealer(), sodiumSealer());
    const old = sealed(a, Buffer.from('in flight'), 0);
    const next = sealed(a, Buffer.from('new epoch'), REKEY_AFTER_MS + 1);
    expect(a.epoch.send).toBe(1);
    expect(b.openInPlace(next, 0, next.length, REKEY_AFTER_MS + 2)).toBe('ok');
    expect(b.epoch.recv).toBe(1);
    // The datagram sealed before the switch still opens during the grace period...
    expect(b.openInPlace(old, 0, old.length, REKEY_AFTER_MS + 3)).toBe('ok');
    // ...but not after it.
    const late = sealed(a, Buffer.from('x'), REKEY_AFTER_MS + 4);
    const stale = Buffer.from(late);
    stale[0] = 0; // claims the old epoch
    expect(b.openInPlace(stale, 0, stale.length, REKEY_AFTER_MS + PREVIOUS_KEY_GRACE_MS + 10)).toBe('bad_epoch');
    expect(b.openInPlace(late, 0, late.length, REKEY_AFTER_MS + 5)).toBe('ok');
  });

  it('keys of one direction do not open the other', () => {
    const { a } = pair(sodiumSealer(), sodiumSealer());
    const unit = sealed(a, Buffer.from('hello'));
    // a cannot open its own datagrams: the receive key is the other direction's.
    expect(a.openInPlace(unit, 0, unit.length, 0)).toBe('forged');
  });
});

/**
 * Two ends of a sealed sleeve path driven through simulated time: each sends a sealed
 * heartbeat every second (every 200 ms while it has no answer, as the sleeve does) and a
 * stream of sealed data, answers the other's heartbeats, and tells its PeerCrypto what
 * the sleeve tells it (heartbeatSent after sealing one, heartbeatAcked on an answer).
 * During an outage every datagram is lost, both ways. Returns how long after the outage
 * ended both directions opened a heartbeat again, or undefined if they never did.
 */
function outageRecoveryMs(outageMs: number, opts: { dataEveryMs?: number } = {}): number | undefined {
  const { a, b } = pair(sodiumSealer(), sodiumSealer());
  const stepMs = 50;
  const start = 10 * 60_000; // ten minutes of normal traffic first: several rekeys
  const end = start + outageMs;
  const ends = [
    { me: a, other: b, seq: 0, lastAck: 0, lastSent: -Infinity, lastData: 0, opened: 0 },
    { me: b, other: a, seq: 0, lastAck: 0, lastSent: -Infinity, lastData: 0, opened: 0 },
  ];
  const lost = (t: number): boolean => t >= start && t < end;
  const deliver = (to: PeerCrypto, unit: Buffer, t: number): boolean =>
    !lost(t) && to.openInPlace(unit, 0, unit.length, t) === 'ok';
  const heartbeatBody = (kind: number, n: number): Buffer => {
    const m = Buffer.alloc(5);
    m[0] = kind;
    m.writeUInt32BE(n, 1);
    return m;
  };
  for (let t = 0; t < end + 30 * 60_000; t += stepMs) {
    for (const [i, e] of ends.entries()) {
      const peer = ends[1 - i]!;
      const dataEvery = opts.dataEveryMs ?? 10;
      // Data into the path (lost during the outage): it must not move the epoch past reach.
      for (; e.lastData + dataEvery <= t; e.lastData += dataEvery)
        deliver(e.other, sealed(e.me, Buffer.from('frame'), t), t);
      const up = t - e.lastAck < 4000;
      if (t - e.lastSent < (up ? 1000 : 200)) continue;
      e.lastSent = t;
      e.seq++;
      const hb = sealed(e.me, heartbeatBody(1, e.seq), t);
      e.me.heartbeatSent(e.seq);
      if (!deliver(e.other, hb, t)) continue;
      if (t >= end && peer.opened === 0) peer.opened = t;
      // The other end answers with a sealed ack echoing the sequence number.
      const ack = sealed(e.other, heartbeatBody(2, hb.readUInt32BE(SEAL_UNIT_OVERHEAD + 1)), t);
      if (!deliver(e.me, ack, t)) continue;
      e.me.heartbeatAcked(ack.readUInt32BE(SEAL_UNIT_OVERHEAD + 1));
      e.lastAck = t;
    }
    if (ends[0]!.opened > 0 && ends[1]!.opened > 0) return Math.max(ends[0]!.opened, ends[1]!.opened) - end;
  }
  return undefined;
}

describe('sealed path recovery after a UDP outage (simulated time)', () => {
  for (const [label, ms] of [
    ['20 s', 20_000],
    ['250 s (two rekey intervals)', 250_000],
    ['5 min', 5 * 60_000],
    ['15 min', 15 * 60_000],
    ['9 h (the u8 epoch would wrap)', 9 * 3_600_000],
  ] as const) {
    it(`both directions open again within a second after a ${label} outage`, () => {
      const r = outageRecoveryMs(ms, ms > 3_600_000 ? { dataEveryMs: 1000 } : {});
      expect(r, 'never recovered').toBeDefined();
      expect(r!).toBeLessThanOrEqual(1000);
    });
  }

  it('still rekeys while the path works, so forward secrecy stays per epoch', () => {
    const { a, b } = pair(sodiumSealer(), sodiumSealer());
    let seq = 0;
    for (let t = 0; t < 10 * REKEY_AFTER_MS; t += 1000) {
      const hb = sealed(a, Buffer.from([1]), t);
      a.heartbeatSent(++seq);
      expect(b.openInPlace(hb, 0, hb.length, t)).toBe('ok');
      a.heartbeatAcked(seq);
    }
    expect(a.epoch.send).toBeGreaterThanOrEqual(9);
    expect(b.epoch.recv).toBe(a.epoch.send);
  });

  it('an answer to a heartbeat of an earlier epoch does not let the sender run ahead', () => {
    const { a, b } = pair(sodiumSealer(), sodiumSealer());
    const hb0 = sealed(a, Buffer.from([1]), 0);
    a.heartbeatSent(1);
    expect(b.openInPlace(hb0, 0, hb0.length, 0)).toBe('ok');
    a.heartbeatAcked(1); // the peer opens epoch 0
    sealed(a, Buffer.from([1]), REKEY_AFTER_MS); // epoch 1, never delivered
    a.heartbeatSent(2);
    expect(a.epoch.send).toBe(1);
    a.heartbeatAcked(1); // a late answer about epoch 0 again
    const later = sealed(a, Buffer.from([1]), 3 * REKEY_AFTER_MS);
    expect(a.epoch.send).toBe(1);
    expect(b.openInPlace(later, 0, later.length, 3 * REKEY_AFTER_MS)).toBe('ok');
  });
});
