/**
 * The plugin socket Docker finds (by default /run/docker/plugins/weavets.sock; the
 * driver name Docker sees is the socket's base name). Every route is POST; the body is
 * read whatever the Content-Type (Docker sends none). Answers in Docker's plugin media type.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Logger } from '../log';
import { PLUGIN_CONTENT_TYPE, errorAnswer, PluginError, type PluginAnswer } from './protocol';

export const MAX_PLUGIN_BODY = 1024 * 1024;

export interface PluginHandler {
  handle(urlPath: string, text: string): Promise<PluginAnswer>;
}

export interface PluginServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, a: PluginAnswer): void {
  const text = JSON.stringify(a.body) + '\n';
  res.writeHead(a.status, { 'content-type': PLUGIN_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The driver name Docker will know us by: the socket's base name without ".sock". */
export function driverNameOf(socketPath: string): string {
  return path.basename(socketPath).replace(/\.sock$/, '');
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socketPath);
    c.setTimeout(1000);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
    c.once('timeout', () => {
      c.destroy();
      resolve(false);
    });
  });
}

export async function startPluginServer(
  socketPath: string,
  handler: PluginHandler,
  log: Logger,
): Promise<PluginServer> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  // Another daemon (another state dir) may serve this path: never take it over. A socket
  // nobody answers on is a crashed run's, and is replaced.
  if (fs.existsSync(socketPath)) {
    if (await answers(socketPath))
      throw new Error(
        `another process serves ${socketPath}; give this daemon its own --docker-plugin-socket (or "" for none)`,
      );
    fs.rmSync(socketPath, { force: true });
  }
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0]!;
    if (req.method !== 'POST') {
      send(res, errorAnswer(new PluginError(405, `weavets: plugin methods are POST, not ${req.method ?? '?'}`)));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_PLUGIN_BODY) tooBig = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (tooBig) {
        send(res, errorAnswer(new PluginError(413, `weavets: request body over ${MAX_PLUGIN_BODY} bytes`)));
        return;
      }
      handler.handle(url, Buffer.concat(chunks).toString('utf8')).then(
        (a) => send(res, a),
        (err: unknown) => send(res, errorAnswer(err)),
      );
    });
    req.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(socketPath, 0o600);
  const ino = fs.statSync(socketPath).ino;
  log.info('Docker plugin listening', { socket: socketPath, driver: driverNameOf(socketPath) });
  return {
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        // Only our own socket: another daemon may have bound the path since.
        try {
          if (fs.statSync(socketPath).ino === ino) fs.unlinkSync(socketPath);
        } catch {
          /* gone */
        }
      }),
  };
}
