import { describe, expect, it } from 'vitest';
import {
  ControlDecodeError,
  MAX_CONTROL_MESSAGE,
  MessageType,
  decode,
  encode,
  encodingLength,
  frameLength,
  MAX_HANDSHAKE_MESSAGE,
  negotiateVersion,
  type ControlMessage,
} from '../../src/router/control-codec';

const hello: ControlMessage = {
  type: MessageType.Hello,
  hello: {
    minVersion: 1,
    maxVersion: 1,
    flags: 0,
    name: 0x0211223344 * 256 + 0x55,
    uid: 0x0102030405060708n,
    controlPort: 6783,
    dataPort: 6783,
    publicKey: Buffer.alloc(32, 0xaa),
    nickname: 'h1',
  },
};

describe('control codec', () => {
  it('encodes HELLO to the documented bytes', () => {
    const bytes = encode(hello);
    // length field = 1 (type) + 59 (fixed) + 2 (nickname) = 62 = 0x3e
    expect(bytes.toString('hex')).toBe(
      '0000003e' + // length
        '01' + // HELLO
        '57565453' + // "WVTS"
        '01' +
        '01' + // versions 1..1
        '0000' + // flags
        '021122334455' + // peer name
        '0102030405060708' + // uid
        '1a7f' +
        '1a7f' + // control and data port 6783
        'aa'.repeat(32) + // ephemeral public key
        '02' +
        '6831', // nickname "h1"
    );
  });

  it('round-trips every message type', () => {
    const msgs: ControlMessage[] = [
      hello,
      { type: MessageType.Ping, nonce: 42n },
      { type: MessageType.Pong, nonce: 2n ** 64n - 1n },
      { type: MessageType.Gossip, payload: Buffer.from([1, 2, 3]) },
      { type: MessageType.Close, reason: 'duplicate connection' },
      { type: MessageType.KeyExchange, share: Buffer.alloc(32, 7) },
      { type: MessageType.Finished, tag: Buffer.alloc(32, 9), flags: 1 },
    ];
    for (const m of msgs) {
      const b = encode(m);
      expect(b.length).toBe(encodingLength(m));
      expect(frameLength(b)).toBe(b.length);
      expect(decode(b)).toEqual(m);
    }
  });

  it('reports incomplete frames and refuses absurd lengths', () => {
    const b = encode({ type: MessageType.Ping, nonce: 1n });
    expect(frameLength(b.subarray(0, 3))).toBe(0);
    expect(frameLength(b.subarray(0, b.length - 1))).toBe(0);
    const huge = Buffer.alloc(8);
    huge.writeUInt32BE(MAX_CONTROL_MESSAGE + 1, 0);
    expect(() => frameLength(huge)).toThrow(ControlDecodeError);
    expect(() => frameLength(Buffer.alloc(4))).toThrow(/empty frame/);
  });

  it('before authentication, caps frames at what a handshake needs (a sealed CLOSE with the longest reason)', () => {
    const longest = encode({ type: MessageType.Close, reason: 'r'.repeat(1024) });
    // Sealed, the same frame gains a 16-byte MAC: exactly the cap.
    expect(longest.length - 4 + 16).toBe(MAX_HANDSHAKE_MESSAGE);
    const at = Buffer.alloc(4 + MAX_HANDSHAKE_MESSAGE);
    at.writeUInt32BE(MAX_HANDSHAKE_MESSAGE, 0);
    expect(frameLength(at, 0, MAX_HANDSHAKE_MESSAGE)).toBe(at.length);
    const over = Buffer.alloc(4);
    over.writeUInt32BE(MAX_HANDSHAKE_MESSAGE + 1, 0);
    expect(() => frameLength(over, 0, MAX_HANDSHAKE_MESSAGE)).toThrow(/exceeds limit of 1043/);
    expect(frameLength(over)).toBe(0); // after authentication: just incomplete
  });

  it('refuses a HELLO with port 0 or a nickname that is not printable UTF-8', () => {
    for (const h of [
      { ...hello.hello, controlPort: 0 },
      { ...hello.hello, dataPort: 0 },
      { ...hello.hello, nickname: 'a\nb' },
    ]) {
      expect(() => decode(encode({ type: MessageType.Hello, hello: h }))).toThrow(ControlDecodeError);
    }
    const bad = encode(hello);
    bad[bad.length - 1] = 0xff; // "h" + an invalid UTF-8 byte
    expect(() => decode(bad)).toThrow(/not printable UTF-8/);
  });

  it('rejects malformed messages with a reason', () => {
    const good = encode(hello);
    const badMagic = Buffer.from(good);
    badMagic[5] = 0;
    expect(() => decode(badMagic)).toThrow(/bad hello magic/);
    const zeroName = Buffer.from(good);
    zeroName.fill(0, 13, 19);
    expect(() => decode(zeroName)).toThrow(/peer name is zero/);
    const unknown = Buffer.from('0000000163', 'hex');
    expect(() => decode(unknown)).toThrow(/unknown message type 99/);
    const shortPing = Buffer.from('000000030200', 'hex');
    expect(() => decode(shortPing)).toThrow(ControlDecodeError);
  });

  it('frames a STORE message (type 9) around its opaque body, never empty', () => {
    const msg: ControlMessage = {
      type: MessageType.Store,
      payload: Buffer.from('03020000000002000000000000000c020000000001', 'hex'),
    };
    const buf = encode(msg);
    expect(buf.toString('hex')).toBe('0000001609' + '03020000000002000000000000000c020000000001');
    expect(encodingLength(msg)).toBe(buf.length);
    expect(decode(buf)).toEqual(msg);
    expect(() => decode(Buffer.from('0000000109', 'hex'))).toThrow(/store message is empty/);
  });

  it('negotiates the highest shared version', () => {
    expect(negotiateVersion({ minVersion: 1, maxVersion: 3 }, { minVersion: 2, maxVersion: 5 })).toBe(3);
    expect(negotiateVersion({ minVersion: 1, maxVersion: 1 }, { minVersion: 2, maxVersion: 2 })).toBeUndefined();
  });

  it('survives fuzzing: only a message or a ControlDecodeError', () => {
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const seeds = [
      encode(hello),
      encode({ type: MessageType.Close, reason: 'x' }),
      encode({ type: MessageType.Ping, nonce: 7n }),
    ];
    for (let i = 0; i < 20000; i++) {
      let b: Buffer;
      if (i % 2 === 0) {
        b = Buffer.alloc(rand(120));
        for (let j = 0; j < b.length; j++) b[j] = rand(256);
      } else {
        b = Buffer.from(seeds[rand(seeds.length)]!);
        for (let k = 0; k < 1 + rand(4); k++) b[rand(b.length)] = rand(256);
        b = b.subarray(0, rand(b.length + 1));
      }
      try {
        const n = frameLength(b);
        if (n > 0) decode(b, 0, n);
      } catch (err) {
        expect(err).toBeInstanceOf(ControlDecodeError);
      }
    }
  });
});
