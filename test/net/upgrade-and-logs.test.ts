/**
 * What an operator meets when peers run different versions, and when something floods a
 * daemon: a HELLO from below our version range is refused with a CLOSE naming both
 * ranges (and a log line doing the same), the oldest range we still speak gets our HELLO
 * back, and a flood of refused handshakes leaves the background log capped by
 * --log-max-size (weavets.log plus two rotated copies) with the daemon still serving.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RouterStatus } from '../../src/router/status';
import { PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION } from '../../src/router/control-codec';
import { REPO_ROOT, type Host, type Lab } from './harness';
import { useLab } from './lab-hooks';

const LOG_CAP = 4096;

/**
 * A peer speaking only `version`, run in a host's namespace: per connection it sends a
 * HELLO and prints what came back first ("hello 1..1", "close <reason>", "closed").
 */
const OLD_PEER = `
const net = require('node:net');
const c = require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'router', 'control-codec.js'))});
const [host, version, count, gapMs] = process.argv.slice(2).map((a, i) => (i === 0 ? a : Number(a)));
function once(i) {
  return new Promise((resolve) => {
    const s = net.connect(6783, host);
    let buf = Buffer.alloc(0);
    const done = (what) => { resolve(what); s.destroy(); };
    s.on('connect', () => s.write(c.encode({ type: 1, hello: { minVersion: version, maxVersion: version, flags: 0,
      name: 0x0a0000000000 + i, uid: BigInt(i + 1), controlPort: 6783, dataPort: 6783, publicKey: Buffer.alloc(32, 7), nickname: 'old' } })));
    let hello;
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (let len = c.frameLength(buf); len > 0; len = c.frameLength(buf)) {
        const m = c.decode(buf, 0, len);
        buf = buf.subarray(len);
        if (m.type === 5) return done('close ' + m.reason);
        // Both ends send HELLO first: a refusal follows it at once, acceptance does not.
        if (m.type === 1 && hello === undefined) {
          hello = 'hello ' + m.hello.minVersion + '..' + m.hello.maxVersion;
          setTimeout(() => done(hello), 1000).unref();
        }
      }
    });
    s.on('error', (e) => done('error ' + e.code));
    s.on('close', () => done(hello ? hello + ', then closed' : 'closed'));
    setTimeout(() => done('timeout'), 5000).unref();
  });
}
(async () => { for (let i = 0; i < count; i++) { console.log(await once(i)); await new Promise((r) => setTimeout(r, gapMs)); } })();
`;

let lab: Lab;
let h1: Host;
let h2: Host;

async function oldPeer(version: number, count: number, gapMs = 0): Promise<string[]> {
  const script = path.join(lab.dir, 'old-peer.js');
  fs.writeFileSync(script, OLD_PEER);
  const r = await lab.execOk(h2, [process.execPath, script, h1.ip, String(version), String(count), String(gapMs)], {
    timeoutMs: 120_000,
  });
  return r.stdout.trim().split('\n');
}

describe('peers of other versions, and the log cap', () => {
  useLab(async (l) => {
    lab = l;
    h1 = await lab.addHost('h1');
    h2 = await lab.addHost('h2');
    await lab.launch(h1, [], ['--log-max-size', String(LOG_CAP), '--log-level', 'debug']);
  });

  it('refuses a HELLO from the older range with a message naming both versions', async () => {
    const older = PROTOCOL_MIN_VERSION - 1;
    const [answer] = await oldPeer(older, 1);
    const both = `peer speaks ${older}..${older}, we speak ${PROTOCOL_MIN_VERSION}..${PROTOCOL_MAX_VERSION}`;
    expect(answer).toBe(`close protocol version mismatch: ${both}`);
    // The daemon's side says the same to its operator (the log may have rotated since).
    const logs = ['weavets.log', 'weavets.log.1'].map((f) => {
      try {
        return fs.readFileSync(path.join(h1.stateDir, f), 'utf8');
      } catch {
        return '';
      }
    });
    expect(logs.join('')).toContain(both);
  });

  it('answers a peer speaking the oldest version it supports with its own HELLO', async () => {
    const [answer] = await oldPeer(PROTOCOL_MIN_VERSION, 1);
    expect(answer).toBe(`hello ${PROTOCOL_MIN_VERSION}..${PROTOCOL_MAX_VERSION}`);
  });

  it('keeps the background log under --log-max-size through a flood of refused handshakes', async () => {
    // Admission lets one address through at a few per second (src/router/admission.ts):
    // one attempt every 100 ms for 15 s gets dozens of refusals logged.
    const answers = await oldPeer(PROTOCOL_MIN_VERSION - 1, 150, 100);
    const refused = answers.filter((a) => a.startsWith('close protocol version mismatch')).length;
    // Each refusal logs two lines (~190 bytes each), so 40 are ~15K: more than the file
    // and both copies hold (3 x 4K).
    expect(refused).toBeGreaterThanOrEqual(40);
    const file = (suffix: string): string => path.join(h1.stateDir, `weavets.log${suffix}`);
    for (const suffix of ['', '.1', '.2']) {
      expect(fs.statSync(file(suffix)).size).toBeLessThanOrEqual(LOG_CAP);
    }
    expect(fs.existsSync(file('.3'))).toBe(false);
    expect(fs.statSync(file('.1')).mode & 0o077).toBe(0);
    // The newest refusal is in the current file; the daemon still serves.
    expect(fs.readFileSync(file('.1'), 'utf8') + fs.readFileSync(file(''), 'utf8')).toContain('refusing peer');
    const status = await lab.weavetsJson<RouterStatus>(h1, ['status']);
    expect(status.name).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  });
});
