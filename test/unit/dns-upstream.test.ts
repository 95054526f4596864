import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Upstream } from '../../src/dns/upstream';
import { silentLogger as log } from '../../src/log';

/** A DNS query for example.org A with the client's id. */
function query(id: number): Buffer {
  const q = Buffer.from('000001000001000000000000076578616d706c65036f72670000010001', 'hex');
  q.writeUInt16BE(id, 0);
  return q;
}

function forward(up: Upstream, q: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => up.forward(q, resolve));
}

describe('upstream relay', () => {
  let dir: string;
  let server: dgram.Socket;
  let seen: { port: number; id: number }[];
  let answer: (msg: Buffer, rinfo: dgram.RemoteInfo) => void;
  let up: Upstream;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-upstream-'));
    fs.writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    seen = [];
    answer = (msg, rinfo) => {
      const r = Buffer.from(msg);
      r[2] = 0x81;
      server.send(r, rinfo.port, rinfo.address);
    };
    server = dgram.createSocket('udp4');
    server.on('message', (msg, rinfo) => {
      seen.push({ port: rinfo.port, id: msg.readUInt16BE(0) });
      answer(msg, rinfo);
    });
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
    up = new Upstream({
      resolvConf: path.join(dir, 'resolv.conf'),
      isOwnAddress: () => false,
      serverPort: server.address().port,
      timeoutMs: 500,
      log,
    });
  });

  afterEach(() => {
    up.close();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sends each query from a fresh source port under a fresh random id, and gives the client its own id back', async () => {
    for (let i = 0; i < 20; i++) {
      const res = await forward(up, query(0x1234));
      expect(res?.readUInt16BE(0)).toBe(0x1234);
      expect(res?.[2]).toBe(0x81);
    }
    expect(seen).toHaveLength(20);
    // Random ephemeral ports may collide by chance (~1% for a pair in 20); one socket would give 1.
    expect(new Set(seen.map((s) => s.port)).size).toBeGreaterThanOrEqual(18);
    expect(new Set(seen.map((s) => s.id)).size).toBeGreaterThanOrEqual(18);
    // Not a counter: consecutive ids are not a small step apart.
    let near = 0;
    for (let i = 1; i < seen.length; i++) if ((seen[i]!.id - seen[i - 1]!.id + 0x10000) % 0x10000 <= 32) near++;
    expect(near).toBeLessThan(4);
  });

  it('drops answers from another port or with another id, and takes the genuine one', async () => {
    const spoofer = dgram.createSocket('udp4');
    await new Promise<void>((r) => spoofer.bind(0, '127.0.0.1', r));
    answer = (msg, rinfo) => {
      const forged = Buffer.from(msg);
      forged[2] = 0xee; // right id, right address, wrong source port
      spoofer.send(forged, rinfo.port, rinfo.address);
      const wrongId = Buffer.from(msg);
      wrongId.writeUInt16BE((msg.readUInt16BE(0) + 1) & 0xffff, 0);
      wrongId[2] = 0xdd; // right source, wrong id
      server.send(wrongId, rinfo.port, rinfo.address);
      setTimeout(() => {
        const r = Buffer.from(msg);
        r[2] = 0x81;
        server.send(r, rinfo.port, rinfo.address);
      }, 50);
    };
    try {
      const res = await forward(up, query(7));
      expect(res?.[2]).toBe(0x81);
      expect(res?.readUInt16BE(0)).toBe(7);
    } finally {
      spoofer.close();
    }
  });

  it('answers undefined (SERVFAIL) when the server never answers, and closes cleanly with queries in flight', async () => {
    answer = () => undefined;
    expect(await forward(up, query(1))).toBeUndefined();
    const inflight = forward(up, query(2));
    up.close();
    expect(await inflight).toBeUndefined();
  });
});
