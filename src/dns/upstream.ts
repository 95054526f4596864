/**
 * Forwarding outside our zones: to the nameservers of the host's resolv.conf (re-read
 * when it changes, never our own listen addresses), one after the other with a timeout
 * each; SERVFAIL when all fail. The query is relayed as bytes under an id of our own, so
 * what the client asked (EDNS, flags) reaches the upstream unchanged.
 */
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import type { Logger } from '../log';
import { canonicalIpv4 } from './names';

export interface UpstreamOptions {
  resolvConf: string;
  /** Addresses never used as upstream (ours). */
  isOwnAddress(ip: string): boolean;
  /** Per-server timeout, ms. */
  timeoutMs?: number;
  /** Queries in flight before new ones fail at once. */
  maxPending?: number;
  log: Logger;
}

interface Pending {
  query: Buffer;
  clientId: number;
  servers: string[];
  next: number;
  timer: NodeJS.Timeout;
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
  private socket: dgram.Socket | undefined;
  private readonly pending = new Map<number, Pending>();
  private servers: string[] = [];
  private mtimeMs = -1;
  private checkedAt = 0;
  private nextId = Math.floor(Math.random() * 65536);
  private readonly timeoutMs: number;
  private readonly maxPending: number;
  forwarded = 0;
  failed = 0;

  constructor(private readonly opts: UpstreamOptions) {
    this.timeoutMs = opts.timeoutMs ?? 1500;
    this.maxPending = opts.maxPending ?? 2048;
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
          this.opts.log.info('upstream nameservers', { file: this.opts.resolvConf, servers: this.servers.join(',') || '(none)' });
        }
      } catch (err) {
        if (this.mtimeMs !== -2) this.opts.log.warn('cannot read resolv.conf; no upstream', { file: this.opts.resolvConf, error: (err as Error).message });
        this.mtimeMs = -2;
        this.servers = [];
      }
    }
    return this.servers.filter((s) => !this.opts.isOwnAddress(s));
  }

  private ensureSocket(): dgram.Socket {
    if (this.socket) return this.socket;
    const s = dgram.createSocket('udp4');
    s.on('message', (msg, rinfo) => this.onReply(msg, rinfo.address));
    s.on('error', (err) => this.opts.log.warn('upstream socket error', { error: err.message }));
    s.bind(0);
    s.unref();
    this.socket = s;
    return s;
  }

  /** Relay `query`; `done` gets the reply with the client's id, or undefined when all failed. */
  forward(query: Buffer, done: (response: Buffer | undefined) => void): void {
    const servers = this.currentServers();
    if (servers.length === 0 || this.pending.size >= this.maxPending) {
      this.failed++;
      done(undefined);
      return;
    }
    let id = this.nextId;
    for (let tries = 0; this.pending.has(id) && tries < 65536; tries++) id = (id + 1) & 0xffff;
    this.nextId = (id + 1 + Math.floor(Math.random() * 16)) & 0xffff;
    const own = Buffer.from(query);
    const clientId = own.readUInt16BE(0);
    own.writeUInt16BE(id, 0);
    const p: Pending = { query: own, clientId, servers, next: 0, timer: undefined as unknown as NodeJS.Timeout, done };
    this.pending.set(id, p);
    this.forwarded++;
    this.send(id, p);
  }

  private send(id: number, p: Pending): void {
    const server = p.servers[p.next]!;
    this.ensureSocket().send(p.query, 53, server, (err) => {
      if (err) this.opts.log.debug('upstream send failed', { server, error: err.message });
    });
    p.timer = setTimeout(() => {
      p.next++;
      if (p.next < p.servers.length) this.send(id, p);
      else this.finish(id, undefined);
    }, this.timeoutMs);
  }

  private onReply(msg: Buffer, from: string): void {
    if (msg.length < 12) return;
    const id = msg.readUInt16BE(0);
    const p = this.pending.get(id);
    // Only the server we asked last may answer (others would be spoofing or late).
    if (!p || p.servers[p.next] !== from) return;
    msg.writeUInt16BE(p.clientId, 0);
    this.finish(id, msg);
  }

  private finish(id: number, response: Buffer | undefined): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    if (response === undefined) this.failed++;
    p.done(response);
  }

  close(): void {
    for (const id of [...this.pending.keys()]) this.finish(id, undefined);
    this.socket?.close();
    this.socket = undefined;
  }
}
