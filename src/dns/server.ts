/**
 * The DNS listeners: UDP and TCP on each listen address (the host's address on each
 * network bridge, plus any loopback address given with --dns-listen). Never on the
 * underlay: we are not an open resolver.
 *
 * Bounded work: UDP queries go into a queue of at most MAX_QUEUE; each event-loop turn
 * answers at most BATCH of them and yields (setImmediate), so a flood costs dropped
 * queries, not a starved router. TCP has a connection cap and an idle timeout.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { Logger } from '../log';
import { handleQuery, servfail, type ZoneConfig } from './message';
import { FilteredRecordView, type DnsRecordTable, type RecordView } from './records';
import type { Upstream } from './upstream';

const MAX_QUEUE = 4096;
const BATCH = 128;
const MAX_TCP_CONNECTIONS = 256;
const TCP_IDLE_MS = 10_000;
const MAX_TCP_PENDING_BYTES = 65537 * 4;

export interface DnsCounters {
  answered: number;
  nxdomain: number;
  forwarded: number;
  servfail: number;
  formerr: number;
  dropped: number;
}

interface Listener {
  addr: string;
  port: number;
  udp: dgram.Socket;
  tcp: net.Server;
  /** The records askers on this address see (their network's). */
  view: RecordView;
}

/** For a listen address: which record addresses its askers may see; undefined: all (loopback). */
export type VisibilityOf = (listenAddr: string) => ((ip: string) => boolean) | undefined;

/**
 * Encoded answers of one query (bytes after the id), in rotation order. Filled one fresh
 * answer per query until the rotation comes round (a fresh answer equals the first), then
 * served in turn without decoding or encoding anything.
 */
interface CachedAnswers {
  generation: number;
  responses: Buffer[];
  complete: boolean;
  next: number;
}

const MAX_CACHE = 8192;

interface Queued {
  msg: Buffer;
  listener: Listener;
  socket: dgram.Socket;
  address: string;
  port: number;
}

export class DnsServer {
  private readonly listeners = new Map<string, Listener>();
  private readonly queue: Queued[] = [];
  private head = 0;
  private scheduled = false;
  private tcpConnections = 0;
  private readonly cache = new Map<string, CachedAnswers>();
  readonly counters: DnsCounters = { answered: 0, nxdomain: 0, forwarded: 0, servfail: 0, formerr: 0, dropped: 0 };

  constructor(
    private readonly table: DnsRecordTable,
    private readonly zone: ZoneConfig,
    private readonly upstream: Upstream,
    private readonly log: Logger,
    private readonly visibility: VisibilityOf = () => undefined,
  ) {}

  /** Which addresses are visible from which network changed: answers are computed afresh. */
  invalidate(): void {
    this.cache.clear();
    for (const l of this.listeners.values()) l.view = this.viewFor(l.addr);
  }

  private viewFor(addr: string): RecordView {
    const visible = this.visibility(addr);
    return visible === undefined ? this.table : new FilteredRecordView(this.table, visible);
  }

  /** "addr:port" of every listener. */
  addresses(): string[] {
    return [...this.listeners.keys()].sort();
  }

  isListeningOn(ip: string): boolean {
    for (const l of this.listeners.values()) if (l.addr === ip) return true;
    return false;
  }

  /** Listen on exactly these "addr:port" endpoints: open what is new, close what is gone. */
  async reconcile(wanted: { addr: string; port: number }[]): Promise<void> {
    const keys = new Set(wanted.map((w) => `${w.addr}:${w.port}`));
    for (const [key, l] of this.listeners) {
      if (!keys.has(key)) {
        this.closeListener(l);
        this.listeners.delete(key);
        this.log.info('DNS stopped listening', { addr: key });
      }
    }
    for (const w of wanted) {
      const key = `${w.addr}:${w.port}`;
      if (this.listeners.has(key)) continue;
      try {
        this.listeners.set(key, await this.open(w.addr, w.port));
        this.log.info('DNS listening', { addr: key, proto: 'udp+tcp' });
      } catch (err) {
        this.log.error('DNS cannot listen', { addr: key, error: (err as Error).message });
      }
    }
  }

  private async open(addr: string, port: number): Promise<Listener> {
    const udp = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 21 } as dgram.SocketOptions);
    const listener = { addr, port, udp, view: this.viewFor(addr) } as Listener;
    udp.on('message', (msg, rinfo) =>
      this.enqueue({ msg, listener, socket: udp, address: rinfo.address, port: rinfo.port }),
    );
    udp.on('error', (err) => this.log.warn('DNS UDP socket error', { addr, error: err.message }));
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, addr, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const tcp = net.createServer((conn) => this.onTcp(conn, listener));
    tcp.maxConnections = MAX_TCP_CONNECTIONS;
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, addr, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      throw err;
    }
    tcp.on('error', (err) => this.log.warn('DNS TCP listener error', { addr, error: err.message }));
    listener.tcp = tcp;
    return listener;
  }

  private closeListener(l: Listener): void {
    try {
      l.udp.close();
    } catch {
      // already closed
    }
    l.tcp.close();
  }

  private enqueue(q: Queued): void {
    if (this.queue.length - this.head >= MAX_QUEUE) {
      this.counters.dropped++;
      return;
    }
    this.queue.push(q);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.scheduled = false;
    const end = Math.min(this.queue.length, this.head + BATCH);
    for (; this.head < end; this.head++) {
      const q = this.queue[this.head]!;
      this.queue[this.head] = undefined as unknown as Queued;
      this.answer(q.msg, 'udp', (res) => q.socket.send(res, q.port, q.address), q.listener);
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else {
      if (this.head > 1024) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  /** Answer one query; never throws (junk is counted and dropped). */
  answer(msg: Buffer, transport: 'udp' | 'tcp', reply: (res: Buffer) => void, listener?: Listener): void {
    // Cached: only well-formed queries we answered NOERROR/NXDOMAIN get here twice; per
    // listener, since each network sees its own records.
    const key =
      msg.length >= 12 && msg.length <= 512
        ? `${listener?.addr ?? ''}|${transport}${msg.toString('latin1', 2)}`
        : undefined;
    const hit = key === undefined ? undefined : this.cache.get(key);
    if (hit && hit.complete && hit.generation === this.table.generation) {
      const cached = hit.responses[hit.next]!;
      hit.next = (hit.next + 1) % hit.responses.length;
      const res = Buffer.allocUnsafe(cached.length);
      cached.copy(res);
      res.writeUInt16BE(msg.readUInt16BE(0), 0);
      if (res.readUInt16BE(2) & 0x000f) this.counters.nxdomain++;
      else this.counters.answered++;
      reply(res);
      return;
    }
    let outcome;
    try {
      outcome = handleQuery(msg, listener?.view ?? this.table, this.zone, transport);
    } catch (err) {
      this.counters.dropped++;
      this.log.debug('DNS query dropped', { error: (err as Error).message });
      return;
    }
    switch (outcome.kind) {
      case 'drop':
        this.counters.dropped++;
        return;
      case 'answer':
        if (key !== undefined && (outcome.rcode === 0 || outcome.rcode === 3))
          this.remember(key, hit, outcome.response);
        if (outcome.rcode === 1) this.counters.formerr++;
        else if (outcome.rcode === 3) this.counters.nxdomain++;
        else this.counters.answered++;
        reply(outcome.response);
        return;
      case 'forward': {
        this.counters.forwarded++;
        const q = outcome.query;
        this.upstream.forward(msg, (res) => {
          if (res === undefined) {
            this.counters.servfail++;
            try {
              reply(servfail(q));
            } catch {
              // the query decoded but does not re-encode: nothing sensible to send
            }
          } else reply(res);
        });
        return;
      }
    }
  }

  private remember(key: string, entry: CachedAnswers | undefined, response: Buffer): void {
    const gen = this.table.generation;
    if (!entry || entry.generation !== gen) {
      if (this.cache.size >= MAX_CACHE) this.cache.clear();
      this.cache.set(key, { generation: gen, responses: [response], complete: false, next: 0 });
      return;
    }
    // Bytes after the id: the rotation came round when a fresh answer equals the first.
    if (response.subarray(2).equals(entry.responses[0]!.subarray(2))) {
      entry.complete = true;
      entry.next = 1 % entry.responses.length;
    } else if (entry.responses.length < 1024) entry.responses.push(response);
    else this.cache.delete(key);
  }

  private onTcp(conn: net.Socket, listener: Listener): void {
    this.tcpConnections++;
    conn.setTimeout(TCP_IDLE_MS, () => conn.destroy());
    conn.on('error', () => undefined);
    conn.on('close', () => this.tcpConnections--);
    let pending: Buffer = Buffer.alloc(0);
    conn.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (pending.length > MAX_TCP_PENDING_BYTES) {
        conn.destroy();
        return;
      }
      while (pending.length >= 2) {
        const len = pending.readUInt16BE(0);
        if (pending.length < 2 + len) break;
        const msg = pending.subarray(2, 2 + len);
        pending = pending.subarray(2 + len);
        this.answer(
          msg,
          'tcp',
          (res) => {
            if (conn.destroyed) return;
            const frame = Buffer.allocUnsafe(2 + res.length);
            frame.writeUInt16BE(res.length, 0);
            res.copy(frame, 2);
            conn.write(frame);
          },
          listener,
        );
      }
    });
  }

  get tcpConnectionCount(): number {
    return this.tcpConnections;
  }

  close(): void {
    for (const l of this.listeners.values()) this.closeListener(l);
    this.listeners.clear();
    this.queue.length = 0;
    this.head = 0;
  }
}
