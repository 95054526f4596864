/**
 * Forwarding outside our zones: to the nameservers of the host's resolv.conf (re-read
 * when it changes, never our own listen addresses), one after the other with a timeout
 * each; SERVFAIL when all fail. The query is relayed as bytes under an id of our own, so
 * what the client asked (EDNS, flags) reaches the upstream unchanged.
 *
 * Against off-path spoofing (Kaminsky): every upstream query, each retry included, goes
 * out from a socket of its own (a fresh random source port from the kernel) under a
 * fresh random id from the CSPRNG, and an answer counts only if it comes from the server
 * asked, from port 53, with that id. A spoofer has to guess 16 bits of port and 16 of id.
 */
import { randomInt } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import type { Logger } from '../log';
import { canonicalIpv4 } from '../net/ipv4';

export interface UpstreamOptions {
  resolvConf: string;
  /** Addresses never used as upstream (ours). */
  isOwnAddress(ip: string): boolean;
  /** Per-server timeout, ms. */
  timeoutMs?: number;
  /** Queries in flight before new ones fail at once (each holds a socket). */
  maxPending?: number;
  /** Port the servers listen on: 53 (tests point it elsewhere). */
  serverPort?: number;
  log: Logger;
}

interface Pending {
  query: Buffer;
  clientId: number;
  servers: string[];
  next: number;
  /** The id the current upstream query went out under. */
  id: number;
  /** The current upstream query's own socket. */
  socket: dgram.Socket | undefined;
  timer: NodeJS.Timeout | undefined;
  done(response: Buffer | undefined): void;
}

const RECHECK_MS = 1000;

/** Nameserver addresses (IPv4) listed in resolv.conf text, in order. */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const ip = canonicalIpv4(m[1]!);
    if (ip !== undefined && !out.includes(ip)) out.push(ip);
  }
  return out;
}

export class Upstream {
  private readonly pending = new Set<Pending>();
  private servers: string[] = [];
  private mtimeMs = -1;
  private checkedAt = 0;
  private readonly timeoutMs: number;
  private readonly maxPending: number;
  private readonly serverPort: number;
  forwarded = 0;
  failed = 0;

  constructor(private readonly opts: UpstreamOptions) {
    this.timeoutMs = opts.timeoutMs ?? 1500;
    this.maxPending = opts.maxPending ?? 1024;
    this.serverPort = opts.serverPort ?? 53;
  }

  /** The servers we would use now (resolv.conf re-read if it changed). */
  currentServers(): string[] {
    const now = Date.now();
    if (now - this.checkedAt >= RECHECK_MS) {
      this.checkedAt = now;
      try {
        const st = fs.statSync(this.opts.resolvConf);
        if (st.mtimeMs !== this.mtimeMs) {
          this.mtimeMs = st.mtimeMs;
          this.servers = parseResolvConf(fs.readFileSync(this.opts.resolvConf, 'utf8'));
          this.opts.log.info('upstream nameservers', {
            file: this.opts.resolvConf,
            servers: this.servers.join(',') || '(none)',
          });
        }
      } catch (err) {
        if (this.mtimeMs !== -2)
          this.opts.log.warn('cannot read resolv.conf; no upstream', {
            file: this.opts.resolvConf,
            error: (err as Error).message,
          });
        this.mtimeMs = -2;
        this.servers = [];
      }
    }
    return this.servers.filter((s) => !this.opts.isOwnAddress(s));
  }

  /** Relay `query`; `done` gets the reply with the client's id, or undefined when all failed. */
  forward(query: Buffer, done: (response: Buffer | undefined) => void): void {
    const servers = this.currentServers();
    if (servers.length === 0 || this.pending.size >= this.maxPending || query.length < 12) {
      this.failed++;
      done(undefined);
      return;
    }
    const own = Buffer.from(query);
    const p: Pending = {
      query: own,
      clientId: own.readUInt16BE(0),
      servers,
      next: 0,
      id: 0,
      socket: undefined,
      timer: undefined,
      done,
    };
    this.pending.add(p);
    this.forwarded++;
    this.send(p);
  }

  /** Ask the current server, from a new socket under a new id. */
  private send(p: Pending): void {
    this.dropSocket(p);
    const server = p.servers[p.next]!;
    p.id = randomInt(0x10000);
    p.query.writeUInt16BE(p.id, 0);
    const s = dgram.createSocket('udp4');
    p.socket = s;
    s.on('message', (msg, rinfo) => this.onReply(p, s, msg, rinfo));
    s.on('error', (err) => this.opts.log.debug('upstream socket error', { server, error: err.message }));
    // bind(0) on send: the kernel picks a random ephemeral port for this query alone.
    s.send(p.query, this.serverPort, server, (err) => {
      if (err) this.opts.log.debug('upstream send failed', { server, error: err.message });
    });
    p.timer = setTimeout(() => {
      p.next++;
      if (p.next < p.servers.length) this.send(p);
      else this.finish(p, undefined);
    }, this.timeoutMs);
  }

  private onReply(p: Pending, s: dgram.Socket, msg: Buffer, from: dgram.RemoteInfo): void {
    // Only the server we asked, from its DNS port, on this query's socket, with its id;
    // anything else is spoofed or late and is dropped.
    if (p.socket !== s || from.address !== p.servers[p.next] || from.port !== this.serverPort) return;
    if (msg.length < 12 || msg.readUInt16BE(0) !== p.id) return;
    msg.writeUInt16BE(p.clientId, 0);
    this.finish(p, msg);
  }

  private dropSocket(p: Pending): void {
    const s = p.socket;
    p.socket = undefined;
    if (!s) return;
    try {
      s.close();
    } catch {
      // already closed
    }
  }

  private finish(p: Pending, response: Buffer | undefined): void {
    if (!this.pending.delete(p)) return;
    clearTimeout(p.timer);
    this.dropSocket(p);
    if (response === undefined) this.failed++;
    p.done(response);
  }

  close(): void {
    for (const p of [...this.pending]) this.finish(p, undefined);
  }
}
