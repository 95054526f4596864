/**
 * Headless Debian chromium driven over the DevTools protocol on a pipe
 * (--remote-debugging-pipe: requests on fd 3, answers on fd 4, NUL-separated JSON), so
 * tests need no npm browser driver. Runs inside a network namespace (nsenter), with a
 * fresh profile directory, and never talks to anything but the page's own origin.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = '/usr/bin/chromium';

export function chromiumAvailable(): boolean {
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

interface Pending {
  resolve(v: Record<string, unknown>): void;
  reject(e: Error): void;
}

export class HeadlessChromium {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private buffered = '';
  private sessionId = '';
  private exited = false;
  stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly profile: string,
  ) {
    const out = child.stdio[4] as Readable;
    out.setEncoding('utf8');
    out.on('data', (d: string) => this.onData(d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (this.stderr.length < 20_000) this.stderr += d;
    });
    child.on('exit', () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`chromium exited: ${this.stderr.slice(-2000)}`));
      this.pending.clear();
    });
  }

  /** Start chromium inside the namespace at `netnsPath` and open `url` in a page. */
  static async open(netnsPath: string, url: string, size = { width: 1100, height: 1400 }): Promise<HeadlessChromium> {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-chromium-'));
    const args = [
      `--net=${netnsPath}`,
      '--',
      CHROMIUM,
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-dev-shm-usage',
      `--user-data-dir=${profile}`,
      `--window-size=${size.width},${size.height}`,
      '--remote-debugging-pipe',
      'about:blank',
    ];
    const child = spawn('nsenter', args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    const b = new HeadlessChromium(child, profile);
    const target = await b.send('Target.createTarget', { url });
    const attached = await b.send('Target.attachToTarget', { targetId: target['targetId'], flatten: true });
    b.sessionId = String(attached['sessionId']);
    return b;
  }

  private onData(d: string): void {
    this.buffered += d;
    let i: number;
    while ((i = this.buffered.indexOf('\0')) >= 0) {
      const text = this.buffered.slice(0, i);
      this.buffered = this.buffered.slice(i + 1);
      let msg: { id?: number; result?: Record<string, unknown>; error?: { message: string } };
      try {
        msg = JSON.parse(text) as typeof msg;
      } catch {
        continue;
      }
      if (msg.id === undefined) continue; // an event
      const p = this.pending.get(msg.id);
      if (p === undefined) continue;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`CDP: ${msg.error.message}`));
      else p.resolve(msg.result ?? {});
    }
  }

  send(method: string, params: Record<string, unknown> = {}, onPage = false): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(`chromium exited: ${this.stderr.slice(-2000)}`));
    const id = this.nextId++;
    const msg: Record<string, unknown> = { id, method, params };
    if (onPage) msg['sessionId'] = this.sessionId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`CDP ${method}: no answer in 20 s`));
      }, 20_000);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      (this.child.stdio[3] as Writable).write(JSON.stringify(msg) + '\0');
    });
  }

  /** Evaluate an expression in the page; its JSON-able value. */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, true);
    const result = r['result'] as { value?: T } | undefined;
    if (r['exceptionDetails'] !== undefined) throw new Error(`page threw: ${JSON.stringify(r['exceptionDetails'])}`);
    return result?.value as T;
  }

  /** The page as text, the way a screen reader or a person reads it. */
  text(): Promise<string> {
    return this.evaluate<string>('document.body ? document.body.innerText : ""');
  }

  async screenshot(file: string): Promise<void> {
    const r = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, true);
    fs.writeFileSync(file, Buffer.from(String(r['data']), 'base64'));
  }

  async close(): Promise<void> {
    if (!this.exited) {
      await this.send('Browser.close').catch(() => undefined);
      const deadline = Date.now() + 5000;
      while (!this.exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (!this.exited) this.child.kill('SIGKILL');
    }
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}
