/**
 * src/log.ts: --log-max-size parsing and the capped, rotated log file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CappedFileSink, createLogger, parseLogSize } from '../../src/log';
import { buildDaemonConfig, type LaunchFlags } from '../../src/cli/launch';
import { decodeConfig, encodeConfig } from '../../src/cli/config-pipe';

describe('parseLogSize', () => {
  it('reads bytes and K/M/G suffixes, refuses the rest', () => {
    expect(parseLogSize('4096')).toBe(4096);
    expect(parseLogSize('512K')).toBe(512 * 1024);
    expect(parseLogSize('10M')).toBe(10 * 1024 * 1024);
    expect(parseLogSize('1g')).toBe(1024 ** 3);
    expect(parseLogSize('2MiB')).toBe(2 * 1024 * 1024);
    expect(parseLogSize('0')).toBe(0);
    for (const bad of ['', '-1', '1.5M', '10X', 'M']) expect(parseLogSize(bad)).toBeUndefined();
  });

  it('is a launch flag the background launch hands to the daemon', () => {
    const flags = {
      port: '6783',
      bindAddress: '0.0.0.0',
      ipallocRange: '10.32.0.0/12',
      datapath: 'auto',
      httpAddr: '',
      mtu: '0',
      logLevel: 'info',
    } as LaunchFlags;
    const config = buildDaemonConfig('/tmp/x', [], { ...flags, logMaxSize: '64K' });
    expect(config.logMaxSize).toBe(65536);
    expect(decodeConfig(encodeConfig(config)).logMaxSize).toBe(65536);
    expect(() => buildDaemonConfig('/tmp/x', [], { ...flags, logMaxSize: '100' })).toThrow(/--log-max-size/);
    expect(() => buildDaemonConfig('/tmp/x', [], { ...flags, logMaxSize: 'lots' })).toThrow(/--log-max-size/);
  });
});

describe('CappedFileSink', () => {
  it('rotates at the cap, keeps two copies, and the newest line is in the current file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-log-'));
    const file = path.join(dir, 'weavets.log');
    const fd = fs.openSync(file, 'a', 0o600);
    try {
      const sink = CappedFileSink.forFd(fd, 1000);
      expect(sink).toBeDefined();
      const log = createLogger('info', sink, 'test');
      for (let i = 0; i < 200; i++) log.info('handshake refused', { n: i });
      for (const f of ['weavets.log', 'weavets.log.1', 'weavets.log.2']) {
        expect(fs.statSync(path.join(dir, f)).size).toBeLessThanOrEqual(1000);
      }
      expect(fs.readdirSync(dir).sort()).toEqual(['weavets.log', 'weavets.log.1', 'weavets.log.2']);
      expect(fs.readFileSync(file, 'utf8')).toMatch(/n=199\n$/);
      // Continuity: .2 holds older lines than .1, which holds older lines than the file.
      const firstN = (f: string): number => Number(/n=(\d+)/.exec(fs.readFileSync(path.join(dir, f), 'utf8'))![1]);
      expect(firstN('weavets.log.2')).toBeLessThan(firstN('weavets.log.1'));
      expect(firstN('weavets.log.1')).toBeLessThan(firstN('weavets.log'));
    } finally {
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is not used for devices or when the cap is 0', () => {
    expect(CappedFileSink.forFd(fs.openSync('/dev/null', 'w'), 1000)).toBeUndefined();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-log-'));
    const fd = fs.openSync(path.join(dir, 'x.log'), 'a');
    expect(CappedFileSink.forFd(fd, 0)).toBeUndefined();
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
