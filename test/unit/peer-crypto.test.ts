import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { PeerCrypto, PREVIOUS_KEY_GRACE_MS, REKEY_AFTER_MS, SEAL_UNIT_OVERHEAD } from '../../src/datapath/sleeve/peer-crypto';
import { sodiumSealer, tweetnaclSealer, type Sealer } from '../../src/crypto/seal';

/** Two ends of one direction pair: a's send key is b's receive key and vice versa. */
function pair(sealerA: Sealer, sealerB: Sealer, now = 0): { a: PeerCrypto; b: PeerCrypto } {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  return { a: new PeerCrypto(sealerA, { send: k1, recv: k2 }, now), b: new PeerCrypto(sealerB, { send: k2, recv: k1 }, now) };
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
