/**
 * Client for the daemon API over its unix socket. Used by the CLI and (later) the CNI
 * plugin, which starts on every pod: keep the imports to node:http and errors.ts.
 */
import * as http from 'node:http';
import { WeavetsError, type WeavetsErrorCode } from '../errors';

export interface RawResponse {
  status: number;
  body: string;
}

export interface ApiClientOptions {
  /** Give up on a request after this many milliseconds; 0 (default): no limit. */
  timeoutMs?: number;
}

const KNOWN_CODES: ReadonlySet<string> = new Set<WeavetsErrorCode>([
  'EWEAVETS_BAD_REQUEST',
  'EWEAVETS_NOT_FOUND',
  'EWEAVETS_CONFLICT',
  'EWEAVETS_RANGE_EXHAUSTED',
  'EWEAVETS_NOT_RUNNING',
  'EWEAVETS_ALREADY_RUNNING',
  'EWEAVETS_RANGE_CONFLICT',
  'EWEAVETS_STORE_UNAVAILABLE',
  'EWEAVETS_POLICY_INVALID',
  'EWEAVETS_INTERNAL',
]);

export class ApiClient {
  constructor(
    readonly socketPath: string,
    private readonly options: ApiClientOptions = {},
  ) {}

  async get<T>(path: string): Promise<T> {
    return this.json<T>('GET', path, undefined);
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    return this.json<T>('POST', path, body);
  }

  /** One request; never throws for an HTTP error status, only when nothing answers. */
  raw(method: 'GET' | 'POST', path: string, body?: unknown): Promise<RawResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<RawResponse>((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          path,
          method,
          // A private agent without keep-alive: the process exits as soon as we are done.
          agent: false,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : undefined,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      if (this.options.timeoutMs) {
        req.setTimeout(this.options.timeoutMs, () => {
          req.destroy(
            new WeavetsError(
              'EWEAVETS_INTERNAL',
              `no answer from the daemon at ${this.socketPath} within ${this.options.timeoutMs} ms`,
            ),
          );
        });
      }
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectionError(err)));
      req.end(payload);
    });
  }

  private async json<T>(method: 'GET' | 'POST', path: string, body: unknown): Promise<T> {
    const res = await this.raw(method, path, body);
    let parsed: unknown;
    try {
      parsed = res.body === '' ? undefined : JSON.parse(res.body);
    } catch {
      throw new WeavetsError(
        'EWEAVETS_INTERNAL',
        `daemon sent a non-JSON answer to ${method} ${path} (HTTP ${res.status})`,
      );
    }
    if (res.status >= 200 && res.status < 300) return parsed as T;
    const e = parsed as { error?: unknown; code?: unknown } | undefined;
    const code =
      typeof e?.code === 'string' && KNOWN_CODES.has(e.code) ? (e.code as WeavetsErrorCode) : 'EWEAVETS_INTERNAL';
    const message = typeof e?.error === 'string' ? e.error : `${method} ${path} failed with HTTP ${res.status}`;
    throw new WeavetsError(code, message);
  }

  private connectionError(err: NodeJS.ErrnoException): Error {
    if (err instanceof WeavetsError) return err;
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      return new WeavetsError(
        'EWEAVETS_NOT_RUNNING',
        `weavets is not running (no daemon at ${this.socketPath}); start it with \`weavets launch\``,
        { cause: err },
      );
    }
    if (err.code === 'EACCES') {
      return new WeavetsError(
        'EWEAVETS_INTERNAL',
        `permission denied on ${this.socketPath}: the API socket is root-only`,
        { cause: err },
      );
    }
    return new WeavetsError('EWEAVETS_INTERNAL', `cannot reach the daemon at ${this.socketPath}: ${err.message}`, {
      cause: err,
    });
  }
}
