import { describe, expect, it } from 'vitest';
import { DnsRecordTable, parseRecordValue, recordKey } from '../../src/dns/records';
import {
  addressOfReverseName,
  inZone,
  normalizeName,
  recordNameProblem,
  relativeName,
  reverseName,
} from '../../src/dns/names';
import type { KvEntry } from '../../src/store/types';

const entry = (host: string, name: string, ip: string): KvEntry => ({
  key: recordKey(host, { name, ip }),
  value: JSON.stringify({ name, ip }),
  modRevision: 1,
  createRevision: 1,
  lease: '1',
});

describe('dns names', () => {
  it('normalizes case and the trailing dot', () => {
    expect(normalizeName('Web.WeaveTS.Local.')).toBe('web.weavets.local');
    expect(relativeName('WEB.weavets.local.', 'weavets.local')).toBe('web');
    expect(relativeName('db.prod', 'weavets.local')).toBe('db.prod');
  });

  it('checks record names', () => {
    expect(recordNameProblem('web')).toBeUndefined();
    expect(recordNameProblem('db-1.prod')).toBeUndefined();
    expect(recordNameProblem('')).toMatch(/empty/);
    expect(recordNameProblem('-bad')).toMatch(/label/);
    expect(recordNameProblem('a..b')).toMatch(/label/);
    expect(recordNameProblem('x'.repeat(64))).toMatch(/label/);
    expect(recordNameProblem('sp ace')).toMatch(/label/);
  });

  it('builds and parses PTR names', () => {
    expect(reverseName('10.32.0.5')).toBe('5.0.32.10.in-addr.arpa');
    expect(addressOfReverseName('5.0.32.10.in-addr.arpa')).toBe('10.32.0.5');
    expect(addressOfReverseName('0.32.10.in-addr.arpa')).toBeUndefined();
    expect(addressOfReverseName('256.0.32.10.in-addr.arpa')).toBeUndefined();
    expect(addressOfReverseName('05.0.32.10.in-addr.arpa')).toBeUndefined();
    expect(inZone('weavets.local', 'weavets.local')).toBe(true);
    expect(inZone('a.weavets.local', 'weavets.local')).toBe(true);
    expect(inZone('aweavets.local', 'weavets.local')).toBe(false);
  });
});

describe('DnsRecordTable', () => {
  it('indexes by name and address, from a listing and from events', () => {
    const t = new DnsRecordTable();
    t.reset([entry('h1', 'web', '10.32.0.2'), entry('h2', 'web', '10.32.0.10'), entry('h2', 'db', '10.32.0.11')]);
    expect(t.addresses('web')).toEqual(['10.32.0.2', '10.32.0.10']);
    expect(t.names('10.32.0.11')).toEqual(['db']);
    expect(t.size).toBe(3);
    expect(t.nameCount).toBe(2);
    t.apply([{ type: 'delete', key: recordKey('h2', { name: 'web', ip: '10.32.0.10' }), value: '', modRevision: 2 }]);
    expect(t.addresses('web')).toEqual(['10.32.0.2']);
    t.apply([{ type: 'delete', key: recordKey('h1', { name: 'web', ip: '10.32.0.2' }), value: '', modRevision: 3 }]);
    expect(t.hasName('web')).toBe(false);
    expect(t.names('10.32.0.2')).toEqual([]);
  });

  it('keeps a pair two hosts publish until both let go', () => {
    const t = new DnsRecordTable();
    t.reset([entry('h1', 'web', '10.32.0.2'), entry('h2', 'web', '10.32.0.2')]);
    expect(t.addresses('web')).toEqual(['10.32.0.2']);
    t.delete(recordKey('h1', { name: 'web', ip: '10.32.0.2' }));
    expect(t.addresses('web')).toEqual(['10.32.0.2']);
    t.delete(recordKey('h2', { name: 'web', ip: '10.32.0.2' }));
    expect(t.hasName('web')).toBe(false);
  });

  it('rotates a name with several addresses: each address leads in turn', () => {
    const t = new DnsRecordTable();
    t.reset([entry('h1', 'web', '10.32.0.1'), entry('h1', 'web', '10.32.0.2'), entry('h2', 'web', '10.32.0.3')]);
    const firsts = [0, 1, 2, 3, 4, 5].map(() => t.rotated('web')[0]);
    expect(firsts).toEqual(['10.32.0.1', '10.32.0.2', '10.32.0.3', '10.32.0.1', '10.32.0.2', '10.32.0.3']);
    expect([...t.rotated('web')].sort()).toEqual(['10.32.0.1', '10.32.0.2', '10.32.0.3']);
  });

  it('ignores unreadable values, and a put over a key replaces its record', () => {
    const t = new DnsRecordTable();
    t.put('dns/h1/x/0a200001', 'not json');
    t.put('dns/h1/x/0a200001', JSON.stringify({ name: 'BAD NAME', ip: '10.32.0.1' }));
    t.put('dns/h1/x/0a200001', JSON.stringify({ name: 'x', ip: '300.1.1.1' }));
    expect(t.size).toBe(0);
    t.put('dns/h1/x/0a200001', JSON.stringify({ name: 'X', ip: '10.32.0.1' }));
    t.put('dns/h1/x/0a200001', JSON.stringify({ name: 'y', ip: '10.32.0.1' }));
    expect(t.hasName('x')).toBe(false);
    expect(t.addresses('y')).toEqual(['10.32.0.1']);
    expect(parseRecordValue(JSON.stringify({ name: 'A', ip: '10.32.0.1' }))).toEqual({ name: 'a', ip: '10.32.0.1' });
  });
});
