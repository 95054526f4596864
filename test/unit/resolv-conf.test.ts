/**
 * `weavets attach` and a container's resolv.conf: written when absent or ours, a user's
 * file (or a symlink) kept untouched. Writes under /etc/netns/<unique>/ (root), removed after.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { removeContainerResolvConf, writeContainerResolvConf } from '../../src/cli/dns';
import type { EndpointStatus } from '../../src/endpoint/types';

describe('container resolv.conf', () => {
  let name: string;
  let dir: string;
  let file: string;
  let ep: EndpointStatus;

  beforeEach(() => {
    name = `wt-resolv-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
    dir = path.join('/etc/netns', name);
    file = path.join(dir, 'resolv.conf');
    ep = {
      id: 'c1',
      network: 'weavets',
      ifname: 'eth0',
      address: '10.32.0.5/12',
      mac: '02:00:00:00:00:05',
      netns: `/run/netns/${name}`,
      hostVeth: 'vwt1',
      dns: { nameservers: ['10.32.0.1'], search: ['weavets.local'] },
    };
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes it when absent, rewrites its own, and removes its own on detach', () => {
    expect(writeContainerResolvConf(ep)).toEqual({ written: file });
    expect(fs.readFileSync(file, 'utf8')).toMatch(/^# written by weavets attach\nnameserver 10\.32\.0\.1\n/);
    ep.dns = { nameservers: ['10.32.0.9'], search: ['weavets.local'] };
    expect(writeContainerResolvConf(ep)).toEqual({ written: file });
    expect(fs.readFileSync(file, 'utf8')).toContain('nameserver 10.32.0.9');
    removeContainerResolvConf(ep);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('keeps a resolv.conf the user wrote, and leaves it on detach', () => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(file, 'nameserver 192.0.2.53\n');
    expect(writeContainerResolvConf(ep)).toEqual({ kept: file });
    expect(fs.readFileSync(file, 'utf8')).toBe('nameserver 192.0.2.53\n');
    removeContainerResolvConf(ep);
    expect(fs.readFileSync(file, 'utf8')).toBe('nameserver 192.0.2.53\n');
  });

  it('never writes through a symlink', () => {
    fs.mkdirSync(dir, { recursive: true });
    const target = path.join(dir, 'elsewhere');
    fs.writeFileSync(target, '# written by weavets attach\nprecious\n');
    fs.symlinkSync(target, file);
    expect(writeContainerResolvConf(ep)).toEqual({ kept: file });
    expect(fs.readFileSync(target, 'utf8')).toBe('# written by weavets attach\nprecious\n');
    removeContainerResolvConf(ep);
    expect(fs.lstatSync(file).isSymbolicLink()).toBe(true);
  });
});
