/**
 * Single-label names ("db.") answered as db.<domain> when we hold the record: what
 * Docker's embedded resolver forwards for a container name it does not know locally
 * (docs/DOCKER.md, DNS). Unknown short names still go upstream.
 */
import { describe, expect, it } from 'vitest';
import * as dnsPacket from 'dns-packet';
import { handleQuery, type ZoneConfig } from '../../src/dns/message';
import { DnsRecordTable, recordKey } from '../../src/dns/records';
import { DnsServer } from '../../src/dns/server';
import type { Upstream } from '../../src/dns/upstream';
import { parseCidr } from '../../src/net/ipv4';
import { silentLogger } from '../../src/log';

const zone: ZoneConfig = { domain: 'weavets.local', ttl: 30, range: parseCidr('10.32.0.0/12') };

function tableWith(recs: [string, string][]): DnsRecordTable {
  const t = new DnsRecordTable();
  t.reset(
    recs.map(([name, ip], i) => ({
      key: recordKey(`h${i}`, { name, ip }),
      value: JSON.stringify({ name, ip }),
      modRevision: 1,
      createRevision: 1,
      lease: '1',
    })),
  );
  return t;
}

function query(name: string, type: dnsPacket.RecordType = 'A', id = 7): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  });
}

interface Decoded {
  id: number;
  rcode: string;
  flag_aa: boolean;
  flag_rd: boolean;
  questions: { name: string }[];
  answers: { type: string; name: string; ttl: number; data: unknown }[];
  authorities: { type: string; name: string }[];
}

function answer(t: DnsRecordTable, q: Buffer): Decoded {
  const out = handleQuery(q, t, zone, 'udp');
  if (out.kind !== 'answer') throw new Error(`expected an answer, got ${out.kind}`);
  return dnsPacket.decode(out.response) as unknown as Decoded;
}

describe('single-label names', () => {
  const t = tableWith([
    ['db', '10.32.0.3'],
    ['web', '10.32.0.2'],
    ['web', '10.32.0.9'],
    ['db.prod', '10.32.0.7'],
  ]);

  it('answers a short name we hold as the name in our domain, owner echoing the question', () => {
    for (const asked of ['db.', 'db', 'DB.']) {
      const r = answer(t, query(asked));
      expect(r.rcode).toBe('NOERROR');
      expect(r.id).toBe(7);
      expect(r.flag_rd).toBe(true);
      expect(r.questions[0]!.name).toBe(asked.replace(/\.$/, ''));
      expect(r.answers).toEqual([
        { type: 'A', name: asked.replace(/\.$/, ''), ttl: 30, class: 'IN', flush: false, data: '10.32.0.3' },
      ]);
    }
  });

  it('rotates several addresses of a short name like the full name', () => {
    const first = answer(t, query('web.')).answers.map((a) => a.data);
    const second = answer(t, query('web.')).answers.map((a) => a.data);
    expect([...first].sort()).toEqual(['10.32.0.2', '10.32.0.9']);
    expect(second).toEqual([...first].reverse());
  });

  it('answers other types of a short name we hold with NOERROR, no answers and no SOA of ours', () => {
    for (const type of ['AAAA', 'MX', 'TXT'] as const) {
      const r = answer(t, query('db.', type));
      expect(r.rcode).toBe('NOERROR');
      expect(r.answers).toEqual([]);
      expect(r.authorities).toEqual([]);
    }
  });

  it('forwards short names we do not hold, and names with dots outside the domain', () => {
    expect(handleQuery(query('nosuch.'), t, zone, 'udp').kind).toBe('forward');
    expect(handleQuery(query('localhost'), t, zone, 'udp').kind).toBe('forward');
    expect(handleQuery(query('com.'), t, zone, 'udp').kind).toBe('forward');
    // "db.prod" is a record, but a two-label name outside the domain is somebody else's.
    expect(handleQuery(query('db.prod.'), t, zone, 'udp').kind).toBe('forward');
    expect(handleQuery(query('db.example.com.'), t, zone, 'udp').kind).toBe('forward');
    // The root itself is not a short name.
    expect(handleQuery(query('.', 'NS'), t, zone, 'udp').kind).toBe('forward');
  });

  it('keeps the full name and the reverse name as they were', () => {
    expect(answer(t, query('db.weavets.local')).answers.map((a) => a.data)).toEqual(['10.32.0.3']);
    expect(answer(t, query('3.0.32.10.in-addr.arpa', 'PTR')).answers.map((a) => a.data)).toEqual(['db.weavets.local']);
    expect(answer(t, query('nosuch.weavets.local')).rcode).toBe('NXDOMAIN');
  });

  it('follows the table: a short name goes upstream once its record is gone, and answers once it is back', () => {
    const t2 = tableWith([['app', '10.32.0.5']]);
    const key = recordKey('h0', { name: 'app', ip: '10.32.0.5' });
    const forwarded: Buffer[] = [];
    const upstream = {
      forward: (q: Buffer, done: (r: Buffer | undefined) => void) => (forwarded.push(q), done(undefined)),
    } as unknown as Upstream;
    const server = new DnsServer(t2, zone, upstream, silentLogger);
    const ask = (): Decoded => {
      let res: Buffer | undefined;
      server.answer(query('app.', 'A', 99), 'udp', (r) => (res = r));
      return dnsPacket.decode(res!) as unknown as Decoded;
    };
    // Twice: the second may come from the server's answer cache.
    expect(ask().answers.map((a) => a.data)).toEqual(['10.32.0.5']);
    expect(ask().answers.map((a) => a.data)).toEqual(['10.32.0.5']);
    expect(forwarded).toHaveLength(0);
    t2.delete(key);
    expect(ask().rcode).toBe('SERVFAIL');
    expect(forwarded).toHaveLength(1);
    t2.put(key, JSON.stringify({ name: 'app', ip: '10.32.0.5' }));
    expect(ask().answers.map((a) => a.data)).toEqual(['10.32.0.5']);
    expect(forwarded).toHaveLength(1);
  });
});
