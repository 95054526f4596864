/**
 * The daemon's HTTP API. Two listeners share one route table:
 *  - the unix socket in the state dir (root-only, mode 0600): every route, including the
 *    mutating ones the CLI and CNI plugin use;
 *  - an optional TCP listener (default 127.0.0.1:6782): what monitoring needs (status,
 *    metrics, health) for Prometheus and probes, only to requests whose Host header
 *    names the listener (host-check.ts: DNS rebinding). Nothing that changes state, and
 *    no container ids or namespaces (/endpoints, /dns/lookup), is reachable over TCP;
 *    the status page's data (issue 16) names containers and their addresses only.
 * The server knows nothing of the router: it validates requests and calls DaemonControl.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { WeavetsError, httpStatusOf, type WeavetsErrorCode } from '../errors';
import type { Logger } from '../log';
import { isAllowedHost, type ListenAddress } from './host-check';
import type { IpamControl } from '../ipam/status';
import type { DaemonControl, DiagnosticsControl, DnsControl, NetworkControl, PolicyControl } from './types';
import type { AttachRequest, NetworkCreateRequest } from '../endpoint/types';
import type { IpamAllocateRequest, IpamReleaseRequest } from '../ipam/status';
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from './status-page';
import { labelsProblem } from '../policy/labels';
import { StateDir } from '../state/state-dir';
import { FieldReader, parseJsonObject, type BodyErrors } from '../json-fields';
import { PROMETHEUS_CONTENT_TYPE } from '../metrics/exposition';

export interface ApiServerOptions {
  socketPath: string;
  /** "HOST:PORT" for the read-only TCP listener; "" turns it off. */
  httpAddr: string;
  control: DaemonControl;
  log: Logger;
}

export interface ApiServer {
  /** Where the TCP listener is bound (useful with port 0); undefined when it is off. */
  readonly httpAddress: { host: string; port: number } | undefined;
  close(): Promise<void>;
}

export const MAX_BODY_BYTES = 1024 * 1024;

type Body = Record<string, unknown>;

interface Route {
  method: 'GET' | 'POST';
  /** Mutating routes are served on the unix socket only. */
  mutating: boolean;
  /** Served on the TCP status listener too: monitoring data that names no container or namespace. */
  monitoring?: true;
  handle(control: DaemonControl, body: Body, res: http.ServerResponse): Promise<void>;
}

class HttpError extends WeavetsError {
  constructor(
    readonly status: number,
    code: WeavetsErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}

function badRequest(message: string, options?: { cause?: unknown }): WeavetsError {
  return new WeavetsError('EWEAVETS_BAD_REQUEST', message, options);
}

const BODY_ERRORS: BodyErrors = {
  emptyAs: {},
  malformed: (cause) => badRequest(`malformed JSON body: ${cause.message}`, { cause }),
  notObject: () => badRequest('request body must be a JSON object'),
};

function sendJson(res: http.ServerResponse, status: number, value: unknown, done?: () => void): void {
  const text = JSON.stringify(value === undefined ? null : value) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text, done);
}

function sendText(
  res: http.ServerResponse,
  status: number,
  text: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// Each error names the field it rejects, so a client author knows what to fix.
const fields = new FieldReader({ name: (field) => `field '${field}'`, error: badRequest });

const OK = { ok: true };

function ipamOf(c: DaemonControl): IpamControl {
  if (!c.ipam) throw new WeavetsError('EWEAVETS_NOT_FOUND', 'this daemon has no address management');
  return c.ipam;
}

function networksOf(c: DaemonControl): NetworkControl {
  if (!c.networks) throw new WeavetsError('EWEAVETS_NOT_FOUND', 'this daemon has no network catalog');
  return c.networks;
}

function dnsOf(c: DaemonControl): DnsControl {
  if (!c.dns) throw new WeavetsError('EWEAVETS_NOT_FOUND', 'DNS is off on this daemon (launched with --no-dns)');
  return c.dns;
}

function policyOf(c: DaemonControl): PolicyControl {
  if (!c.policy) throw new WeavetsError('EWEAVETS_NOT_FOUND', 'this daemon has no policy support');
  return c.policy;
}

function diagnosticsOf(c: DaemonControl): DiagnosticsControl {
  if (!c.diagnostics) throw new WeavetsError('EWEAVETS_NOT_FOUND', 'this daemon has no diagnostics');
  return c.diagnostics;
}

function statusRoutes(): Record<string, Route> {
  const get = (fn: (c: DaemonControl) => unknown): Route => ({
    method: 'GET',
    mutating: false,
    handle: async (c, _b, res) => sendJson(res, 200, await fn(c)),
  });
  const monitoring = (r: Route): Route => ({ ...r, monitoring: true });
  return {
    '/status': monitoring(get((c) => c.status())),
    '/status/connections': monitoring(get((c) => c.connections())),
    '/status/peers': monitoring(get((c) => c.peers())),
    '/status/targets': monitoring(get((c) => c.targets())),
    // Container ids, netns paths and names: the unix socket only.
    '/endpoints': get((c) => c.endpoints()),
    '/networks': get((c) => networksOf(c).list()),
    // The status page and its data (issue 16): the page shows networks and containers by
    // name and address at the status address, so these are on the TCP listener, behind
    // its Host check. No namespace paths or container ids beyond what the page shows.
    '/status/health': monitoring(get((c) => diagnosticsOf(c).health())),
    '/status/mesh': monitoring(get((c) => diagnosticsOf(c).mesh())),
    '/flows': monitoring(get((c) => diagnosticsOf(c).flows())),
    // Self-contained: it fetches only /status/mesh and /flows.
    '/': {
      method: 'GET',
      mutating: false,
      monitoring: true,
      handle: async (_c, _b, res) => {
        res.writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'content-length': Buffer.byteLength(STATUS_PAGE_HTML),
          'content-security-policy': STATUS_PAGE_CSP,
          'x-content-type-options': 'nosniff',
          'cache-control': 'no-store',
        });
        res.end(STATUS_PAGE_HTML);
      },
    },
    '/ipam/status': monitoring(get((c) => ipamOf(c).status())),
    '/dns/status': monitoring(get((c) => dnsOf(c).status())),
    // Generations and counts only: monitoring. Policies, drops and endpoints name containers: the unix socket only.
    '/policy/status': monitoring(get((c) => policyOf(c).status())),
    '/policy': get((c) => policyOf(c).list()),
    '/policy/drops': get((c) => policyOf(c).drops()),
    '/policy/endpoints': get((c) => policyOf(c).endpoints()),
    '/policy/show': {
      method: 'POST',
      mutating: false,
      handle: async (c, b, res) => sendJson(res, 200, policyOf(c).show(fields.reqString(b, 'name'))),
    },
    // A read, sent as POST for its body; it answers container names, so the unix socket only.
    '/dns/lookup': {
      method: 'POST',
      mutating: false,
      handle: async (c, b, res) => sendJson(res, 200, dnsOf(c).lookup(fields.reqString(b, 'name'))),
    },
    '/metrics': {
      method: 'GET',
      mutating: false,
      monitoring: true,
      handle: async (c, _b, res) => sendText(res, 200, await c.metrics(), PROMETHEUS_CONTENT_TYPE),
    },
    '/healthz': {
      method: 'GET',
      mutating: false,
      monitoring: true,
      handle: async (_c, _b, res) => sendText(res, 200, 'ok\n'),
    },
    '/readyz': {
      method: 'GET',
      mutating: false,
      monitoring: true,
      handle: async (c, _b, res) => (c.ready() ? sendText(res, 200, 'ready\n') : sendText(res, 503, 'not ready\n')),
    },
  };
}

function post(handle: Route['handle']): Route {
  return { method: 'POST', mutating: true, handle };
}

/** Actions: served on the unix socket only. */
function mutatingRoutes(log: Logger): Record<string, Route> {
  return { ...meshAndEndpointRoutes(), ...serviceRoutes(log) };
}

/** The mesh (trace, connect, forget), endpoints and CNI. */
function meshAndEndpointRoutes(): Record<string, Route> {
  return {
    // Sends probe frames into the overlay: kept off the TCP listener like every action.
    '/trace': post(async (c, b, res) => {
      sendJson(
        res,
        200,
        await diagnosticsOf(c).trace(
          fields.reqString(b, 'from'),
          fields.reqString(b, 'to'),
          fields.optString(b, 'port'),
        ),
      );
    }),
    '/connect': post(async (c, b, res) => {
      c.connect(fields.reqStringArray(b, 'peers', { nonEmpty: true }));
      sendJson(res, 200, OK);
    }),
    '/forget': post(async (c, b, res) => {
      c.forget(fields.reqStringArray(b, 'peers', { nonEmpty: true }));
      sendJson(res, 200, OK);
    }),
    '/attach': post(async (c, b, res) => sendJson(res, 200, await c.attach(attachRequest(b)))),
    '/detach': post(async (c, b, res) => {
      // missingOk: detaching an unknown id succeeds (CNI DEL must be idempotent).
      const missingOk = fields.optBoolean(b, 'missingOk') ?? false;
      const release = fields.optBoolean(b, 'release') ?? false;
      // ifname: release by (id, ifname) whatever the endpoint table says (CNI DEL).
      const ifname = fields.optString(b, 'ifname');
      try {
        await c.detach(fields.reqString(b, 'id'), { release, ...(ifname !== undefined ? { ifname } : {}) });
      } catch (err) {
        if (!(missingOk && err instanceof WeavetsError && err.code === 'EWEAVETS_NOT_FOUND')) throw err;
        sendJson(res, 200, { ok: true, found: false });
        return;
      }
      sendJson(res, 200, OK);
    }),
    '/cni': post(runCni),
    '/endpoints/check': post(async (c, b, res) => {
      const id = fields.reqString(b, 'id');
      if (!c.checkEndpoint) throw new WeavetsError('EWEAVETS_INTERNAL', 'this daemon cannot check endpoints');
      sendJson(res, 200, await c.checkEndpoint(id));
    }),
  };
}

/** Policy, networks, exposure, IPAM, DNS and shutdown. */
function serviceRoutes(log: Logger): Record<string, Route> {
  return {
    '/policy/apply': post(async (c, b, res) => {
      const docs = b['documents'];
      if (!Array.isArray(docs)) throw badRequest("field 'documents' must be a list of policy documents");
      sendJson(res, 200, await policyOf(c).apply(docs));
    }),
    '/policy/rm': post(async (c, b, res) => {
      // {name} or {names: [...]}: several in one transaction.
      const names =
        b['names'] !== undefined
          ? fields.reqStringArray(b, 'names', { nonEmpty: true })
          : [fields.reqString(b, 'name')];
      sendJson(res, 200, await policyOf(c).remove(names));
    }),
    '/networks/create': post(async (c, b, res) => {
      const req: NetworkCreateRequest = { name: fields.reqString(b, 'name') };
      const subnet = fields.optString(b, 'subnet');
      if (subnet !== undefined) req.subnet = subnet;
      if (b['options'] !== undefined) req.options = stringRecord(b, 'options');
      sendJson(res, 200, await networksOf(c).create(req));
    }),
    '/networks/rm': post(async (c, b, res) => {
      sendJson(res, 200, await networksOf(c).remove(fields.reqString(b, 'name')));
    }),
    '/expose': post(async (c, b, res) => {
      sendJson(res, 200, await c.expose(fields.optString(b, 'network'), fields.optString(b, 'ip')));
    }),
    '/hide': post(async (c, b, res) => {
      sendJson(res, 200, (await c.hide(fields.optString(b, 'network'))) ?? null);
    }),
    '/ipam/allocate': post(async (c, b, res) => {
      const req: IpamAllocateRequest = { id: fields.reqString(b, 'id') };
      for (const field of ['ifname', 'network', 'ip'] as const) {
        const v = fields.optString(b, field);
        if (v !== undefined) req[field] = v;
      }
      sendJson(res, 200, await ipamOf(c).allocate(req));
    }),
    '/ipam/release': post(async (c, b, res) => {
      const req: IpamReleaseRequest = { id: fields.reqString(b, 'id') };
      const ifname = fields.optString(b, 'ifname');
      if (ifname !== undefined) req.ifname = ifname;
      sendJson(res, 200, await ipamOf(c).release(req));
    }),
    '/ipam/rmpeer': post(async (c, b, res) => {
      sendJson(res, 200, await ipamOf(c).rmpeer(fields.reqString(b, 'name')));
    }),
    '/dns/add': post(async (c, b, res) => {
      sendJson(
        res,
        200,
        await dnsOf(c).add(fields.reqString(b, 'name'), fields.reqStringArray(b, 'ips', { nonEmpty: true })),
      );
    }),
    '/dns/remove': post(async (c, b, res) => {
      sendJson(
        res,
        200,
        await dnsOf(c).remove(
          fields.reqString(b, 'name'),
          b['ips'] === undefined ? [] : fields.reqStringArray(b, 'ips', { nonEmpty: true }),
        ),
      );
    }),
    '/shutdown': post(async (c, b, res) => {
      const removeState = fields.optBoolean(b, 'removeState') ?? false;
      // Answer first: shutting down closes this very server.
      sendJson(res, 200, OK, () => {
        log.info('shutdown requested over the API', { removeState });
        c.shutdown(removeState).catch((err: unknown) => {
          log.error('shutdown failed', { error: err instanceof Error ? err.message : String(err) });
        });
      });
    }),
  };
}

function attachRequest(b: Body): AttachRequest {
  const req: AttachRequest = { id: fields.reqString(b, 'id'), netns: fields.reqString(b, 'netns') };
  for (const field of ['ifname', 'ip', 'network', 'mac', 'name', 'gateway'] as const) {
    const v = fields.optString(b, field);
    if (v !== undefined) req[field] = v;
  }
  if (b['labels'] !== undefined) {
    const bad = labelsProblem(b['labels']);
    if (bad) throw badRequest(`field 'labels': ${bad}`);
    req.labels = b['labels'] as Record<string, string>;
  }
  return req;
}

/** A field that must be an object whose values are all strings (CNI's env, network options). */
function stringRecord(b: Body, field: string): Record<string, string> {
  const v = b[field];
  if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string'))
    throw badRequest(`field '${field}' must be an object of strings`);
  return v as Record<string, string>;
}

/** POST /cni: one CNI invocation run by the daemon for the weavets-cni shim. */
async function runCni(c: DaemonControl, b: Body, res: http.ServerResponse): Promise<void> {
  if (!c.cniExec) throw new WeavetsError('EWEAVETS_NOT_FOUND', 'this daemon does not run CNI invocations');
  const env = stringRecord(b, 'env');
  const stdin = fields.optString(b, 'stdin') ?? '';
  const out = await c.cniExec(env, stdin);
  // The shim prints the body as the plugin's stdout and exits with x-cni-exit.
  res.writeHead(200, {
    'content-type': 'application/json',
    'x-cni-exit': String(out.status),
    'content-length': Buffer.byteLength(out.stdout),
  });
  res.end(out.stdout);
}

function readBody(req: http.IncomingMessage): Promise<Body> {
  return new Promise<Body>((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      reject(new HttpError(413, 'EWEAVETS_BAD_REQUEST', `request body larger than ${MAX_BODY_BYTES} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        failed = true;
        reject(new HttpError(413, 'EWEAVETS_BAD_REQUEST', `request body larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
    });
    req.on('end', () => {
      if (failed) return;
      try {
        resolve(parseJsonObject(Buffer.concat(chunks).toString('utf8'), BODY_ERRORS));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

function makeHandler(
  routes: Record<string, Route>,
  control: DaemonControl,
  log: Logger,
  /** Set for the TCP status listener: its address, for the Host check. */
  statusListener: (() => ListenAddress) | undefined,
): http.RequestListener {
  return (req, res) => {
    const handle = async (): Promise<void> => {
      if (statusListener && !isAllowedHost(req.headers.host, statusListener())) {
        const a = statusListener();
        throw new HttpError(
          403,
          'EWEAVETS_BAD_REQUEST',
          `Host ${JSON.stringify(req.headers.host ?? '')} is not this listener's address; ask http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/ or http://localhost:${a.port}/`,
        );
      }
      const pathname = new URL(req.url ?? '/', 'http://weavets').pathname.replace(/\/+$/, '') || '/';
      const route = Object.prototype.hasOwnProperty.call(routes, pathname) ? routes[pathname] : undefined;
      if (!route) throw new HttpError(404, 'EWEAVETS_NOT_FOUND', `no such API route: ${req.method} ${pathname}`);
      if (statusListener && route.mutating) {
        throw new HttpError(
          405,
          'EWEAVETS_BAD_REQUEST',
          `${pathname} is not available on the read-only HTTP listener; use the CLI (unix socket in the state dir)`,
        );
      }
      if (statusListener && !route.monitoring) {
        throw new HttpError(
          403,
          'EWEAVETS_BAD_REQUEST',
          `${pathname} names containers and is not served on the HTTP status listener; use the CLI (unix socket in the state dir)`,
        );
      }
      if (req.method !== route.method && !(route.method === 'GET' && req.method === 'HEAD')) {
        res.setHeader('allow', route.method);
        throw new HttpError(405, 'EWEAVETS_BAD_REQUEST', `${pathname} takes ${route.method}, not ${req.method}`);
      }
      const body = route.method === 'POST' ? await readBody(req) : {};
      await route.handle(control, body, res);
    };
    handle().catch((err: unknown) => {
      let status: number;
      let code: WeavetsErrorCode;
      let message: string;
      if (err instanceof HttpError) {
        ({ status, code, message } = err);
      } else if (err instanceof WeavetsError) {
        ({ code, message } = err);
        status = httpStatusOf(code);
      } else {
        code = 'EWEAVETS_INTERNAL';
        status = 500;
        message = err instanceof Error ? err.message : String(err);
        log.error('API handler failed', { route: req.url, error: message });
        if (err instanceof Error) log.debug(err.stack ?? '');
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendJson(res, status, { error: message, code });
      // Unread request bytes (oversized body) would otherwise keep the socket busy.
      if (status === 413) req.resume();
    });
  };
}

/** Is something listening on this unix socket? Connect and see. */
function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = net.connect({ path: socketPath });
    const done = (alive: boolean): void => {
      s.destroy();
      resolve(alive);
    };
    s.setTimeout(1000, () => done(true));
    s.on('connect', () => done(true));
    s.on('error', () => done(false));
  });
}

function pidOf(stateDir: string): string {
  try {
    const pid = fs.readFileSync(new StateDir(stateDir).pid, 'utf8').trim();
    return /^\d+$/.test(pid) ? pid : 'unknown';
  } catch {
    return 'unknown';
  }
}

async function prepareSocketPath(socketPath: string): Promise<void> {
  const stateDir = path.dirname(socketPath);
  new StateDir(stateDir).ensure();
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new WeavetsError('EWEAVETS_CONFLICT', `${socketPath} exists and is not a socket; move it away and try again`);
  }
  if (await socketAnswers(socketPath)) {
    throw new WeavetsError(
      'EWEAVETS_ALREADY_RUNNING',
      `a daemon is already running for state dir ${stateDir} (pid ${pidOf(stateDir)})`,
    );
  }
  // Left behind by a daemon that died without cleaning up.
  fs.rmSync(socketPath, { force: true });
}

function listen(server: http.Server, target: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(target, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function parseListenAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new WeavetsError('EWEAVETS_BAD_REQUEST', `HTTP listen address '${addr}' is not HOST:PORT`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const { socketPath, control } = opts;
  const log = opts.log.child('api');
  // Both listeners know every route, so TCP can say why it refuses a mutating one.
  const allRoutes = { ...statusRoutes(), ...mutatingRoutes(log) };
  const tcpTarget = opts.httpAddr === '' ? undefined : parseListenAddr(opts.httpAddr);

  await prepareSocketPath(socketPath);
  const unixServer = http.createServer(makeHandler(allRoutes, control, log, undefined));
  await listen(unixServer, { path: socketPath });
  fs.chmodSync(socketPath, 0o600);
  log.info('API listening', { socket: socketPath });

  let tcpServer: http.Server | undefined;
  let httpAddress: ApiServer['httpAddress'];
  if (tcpTarget) {
    let bound: ListenAddress = tcpTarget;
    tcpServer = http.createServer(makeHandler(allRoutes, control, log, () => bound));
    try {
      await listen(tcpServer, tcpTarget);
    } catch (err) {
      await closeServer(unixServer);
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'EADDRINUSE' ? 'address already in use' : e.message;
      throw new WeavetsError(
        'EWEAVETS_CONFLICT',
        `cannot listen on --http-addr ${opts.httpAddr}: ${why}; pick another with --http-addr HOST:PORT or turn it off with --http-addr ""`,
        { cause: err },
      );
    }
    const a = tcpServer.address() as net.AddressInfo;
    httpAddress = { host: a.address, port: a.port };
    bound = httpAddress;
    log.info('status and metrics listening', { addr: `${a.address}:${a.port}` });
  }

  let closing: Promise<void> | undefined;
  return {
    httpAddress,
    close: () => {
      closing ??= (async () => {
        await Promise.all([closeServer(unixServer), tcpServer ? closeServer(tcpServer) : Promise.resolve()]);
        // libuv unlinks the socket it bound; make sure of it even if it did not.
        fs.rmSync(socketPath, { force: true });
      })();
      return closing;
    },
  };
}
