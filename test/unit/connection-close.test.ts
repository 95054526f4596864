/**
 * close() runs from socket handlers and timers, where a throw ends the process: it must
 * never throw, even when the router callback it runs does (as discover() once did for a
 * gossiped port 0, which killed every daemon the message reached).
 */
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { PeerConnection, type ConnectionHandlers } from '../../src/router/connection';
import { PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION } from '../../src/router/control-codec';
import { loadSealer } from '../../src/crypto/seal';
import { createLogger } from '../../src/log';

async function socketPair(): Promise<[net.Socket, net.Socket, () => void]> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((r) => client.once('connect', () => r()));
  const s = await accepted;
  return [client, s, () => server.close()];
}

describe('PeerConnection.close', () => {
  it('never throws, even when the router callback it runs throws; the error is logged', async () => {
    const [a, b, done] = await socketPair();
    const lines: string[] = [];
    const handlers: ConnectionHandlers = {
      onHello: () => undefined,
      onReady: () => undefined,
      onGossip: () => undefined,
      onHealth: () => undefined,
      onStore: () => undefined,
      onClosed: () => {
        throw new Error('invalid port in peer address "192.0.2.9:0"');
      },
      onRejected: () => undefined,
    };
    const conn = new PeerConnection(
      a,
      true,
      '127.0.0.1:1',
      {
        minVersion: PROTOCOL_MIN_VERSION,
        maxVersion: PROTOCOL_MAX_VERSION,
        flags: 0,
        name: 0x020000000001,
        uid: 1n,
        controlPort: 6783,
        dataPort: 6783,
        publicKey: Buffer.alloc(32),
        nickname: 'x',
      },
      handlers,
      createLogger('debug', { write: (l) => void lines.push(l) }),
      { password: undefined, sealer: loadSealer(), trusts: () => false },
    );
    expect(() => conn.close('test')).not.toThrow();
    expect(conn.phase).toBe('closed');
    expect(() => conn.close('again')).not.toThrow();
    expect(lines.some((l) => / error /.test(l) && l.includes('invalid port'))).toBe(true);
    b.destroy();
    done();
  });
});
