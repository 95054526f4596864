/**
 * A TCP proxy on 127.0.0.1 that passes every request through and can hold the answers
 * back: the server does the work, the client never hears of it. That is the call that
 * times out and still commits, made certain; stalling the server instead (SIGSTOP) leaves
 * it to chance whether the request is applied once the server runs again.
 */
import * as net from 'node:net';

export interface AnswerHoldProxy {
  /** Where clients connect, e.g. http://127.0.0.1:PORT. */
  url: string;
  /** From now on, bytes from the server are kept, in order, instead of delivered. */
  hold(): void;
  /** Deliver what was kept and pass answers through again. */
  release(): void;
  close(): Promise<void>;
}

export async function startAnswerHoldProxy(target: { host: string; port: number }): Promise<AnswerHoldProxy> {
  let holding = false;
  const pairs = new Set<{ client: net.Socket; server: net.Socket; kept: Buffer[] }>();
  const flush = (p: { client: net.Socket; kept: Buffer[] }): void => {
    for (const b of p.kept.splice(0)) p.client.write(b);
  };
  const proxy = net.createServer((client) => {
    const server = net.connect(target.port, target.host);
    const pair = { client, server, kept: [] as Buffer[] };
    pairs.add(pair);
    client.pipe(server);
    server.on('data', (b: Buffer) => {
      if (holding) pair.kept.push(b);
      else client.write(b);
    });
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('error', end).on('close', end);
    server.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve, reject) => {
    proxy.once('error', reject);
    proxy.listen(0, '127.0.0.1', resolve);
  });
  const { port } = proxy.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const p of pairs) flush(p);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) {
          p.client.destroy();
          p.server.destroy();
        }
        proxy.close(() => resolve());
      }),
  };
}
