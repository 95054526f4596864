import { describe, expect, it } from 'vitest';
import * as dnsPacket from 'dns-packet';
import { randomBytes } from 'node:crypto';
import { handleQuery, RCODE, type ZoneConfig } from '../../src/dns/message';
import { DnsRecordTable, recordKey } from '../../src/dns/records';
import { parseCidr } from '../../src/net/ipv4';
import { parseResolvConf } from '../../src/dns/upstream';

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

function query(name: string, type: dnsPacket.RecordType = 'A', extra: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    ...extra,
  });
}

interface Rr {
  type: string;
  name: string;
  ttl?: number;
  data?: unknown;
}
interface Decoded {
  id: number;
  rcode: string;
  flag_aa: boolean;
  flag_rd: boolean;
  flag_tc: boolean;
  questions: { name: string }[];
  answers: Rr[];
  authorities: Rr[];
}

function answer(t: DnsRecordTable, q: Buffer, transport: 'udp' | 'tcp' = 'udp'): Decoded {
  const out = handleQuery(q, t, zone, transport);
  if (out.kind !== 'answer') throw new Error(`expected an answer, got ${out.kind}`);
  return dnsPacket.decode(out.response) as unknown as Decoded;
}

describe('handleQuery', () => {
  const t = tableWith([
    ['web', '10.32.0.2'],
    ['web', '10.32.0.9'],
    ['db', '10.32.0.3'],
  ]);

  it('answers A records of a name, case-insensitively, authoritative, echoing id and RD', () => {
    const r = answer(t, query('WEB.WeaveTS.Local'));
    expect(r.id).toBe(4242);
    expect(r.rcode).toBe('NOERROR');
    expect(r.flag_aa).toBe(true);
    expect(r.flag_rd).toBe(true);
    expect(r.questions[0]!.name).toBe('WEB.WeaveTS.Local');
    expect(r.answers.map((a) => a.data).sort()).toEqual(['10.32.0.2', '10.32.0.9']);
    expect(r.answers[0]!.ttl).toBe(30);
  });

  it('rotates the order between queries', () => {
    const first = new Set([0, 1, 2, 3].map(() => answer(t, query('web.weavets.local')).answers[0]!.data as string));
    expect(first).toEqual(new Set(['10.32.0.2', '10.32.0.9']));
  });

  it('answers NXDOMAIN for a missing name and NOERROR/empty for another type, with the SOA', () => {
    const nx = answer(t, query('nope.weavets.local'));
    expect(nx.rcode).toBe('NXDOMAIN');
    expect(nx.authorities[0]!.type).toBe('SOA');
    const aaaa = answer(t, query('db.weavets.local', 'AAAA'));
    expect(aaaa.rcode).toBe('NOERROR');
    expect(aaaa.answers).toEqual([]);
    expect(aaaa.authorities[0]!.type).toBe('SOA');
    expect(answer(t, query('weavets.local', 'SOA')).answers[0]!.type).toBe('SOA');
  });

  it('answers PTR for addresses of the range and NXDOMAIN for unknown ones there', () => {
    const r = answer(t, query('3.0.32.10.in-addr.arpa', 'PTR'));
    expect(r.answers.map((a) => a.data)).toEqual(['db.weavets.local']);
    expect(answer(t, query('77.0.32.10.in-addr.arpa', 'PTR')).rcode).toBe('NXDOMAIN');
  });

  it('forwards names outside its zones, including reverse names outside the range', () => {
    expect(handleQuery(query('example.com'), t, zone, 'udp').kind).toBe('forward');
    expect(handleQuery(query('1.2.0.192.in-addr.arpa', 'PTR'), t, zone, 'udp').kind).toBe('forward');
  });

  it('truncates over 512 bytes without EDNS (TC, no answers) and answers whole over TCP', () => {
    const many = tableWith(Array.from({ length: 60 }, (_, i) => ['big', `10.32.1.${i + 1}`] as [string, string]));
    const udp = answer(many, query('big.weavets.local'));
    expect(udp.flag_tc).toBe(true);
    expect(udp.answers).toEqual([]);
    const tcp = answer(many, query('big.weavets.local'), 'tcp');
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers).toHaveLength(60);
    // With EDNS offering 4096 bytes, 60 records fit in UDP.
    const edns = answer(
      many,
      query('big.weavets.local', 'A', {
        additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as unknown as dnsPacket.Answer],
      }),
    );
    expect(edns.flag_tc).toBe(false);
    expect(edns.answers).toHaveLength(60);
  });

  it('FORMERR for undecodable or multi-question queries, NOTIMP for other opcodes, drops responses and runts', () => {
    const junk = Buffer.concat([query('web.weavets.local').subarray(0, 12), Buffer.from([0xc0, 0xff, 0xff])]);
    const r = handleQuery(junk, t, zone, 'udp');
    expect(r.kind).toBe('answer');
    if (r.kind === 'answer') {
      expect(r.rcode).toBe(RCODE.FORMERR);
      expect(r.response.readUInt16BE(0)).toBe(4242);
    }
    const two = dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [
        { type: 'A', name: 'a.weavets.local' },
        { type: 'A', name: 'b.weavets.local' },
      ],
    });
    expect(answer(t, two).rcode).toBe('FORMERR');
    const update = query('web.weavets.local');
    update.writeUInt16BE((5 << 11) | 0x100, 2);
    expect(answer(t, update).rcode).toBe('NOTIMP');
    const resp = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'web.weavets.local' }] });
    expect(handleQuery(resp, t, zone, 'udp').kind).toBe('drop');
    expect(handleQuery(Buffer.alloc(5), t, zone, 'udp').kind).toBe('drop');
  });

  it('never throws on junk (fuzz): random bytes and mutated valid queries', () => {
    const base = query('web.weavets.local');
    for (let i = 0; i < 20_000; i++) {
      let buf: Buffer;
      if (i % 2 === 0) buf = randomBytes(i % 300);
      else {
        buf = Buffer.from(base);
        for (let k = 0; k < 1 + (i % 5); k++) buf[(i * 7 + k * 13) % buf.length] = (i * 31 + k) & 0xff;
        if (i % 3 === 0) buf = buf.subarray(0, i % buf.length);
      }
      const out = handleQuery(buf, t, zone, i % 4 === 0 ? 'tcp' : 'udp');
      if (out.kind === 'answer') expect(out.response.length).toBeGreaterThanOrEqual(12);
    }
  });
});

describe('parseResolvConf', () => {
  it('takes IPv4 nameservers in order, once each', () => {
    expect(
      parseResolvConf(
        '# c\nsearch x\nnameserver 10.0.0.1\nnameserver ::1\n nameserver 10.0.0.2 \nnameserver 10.0.0.1\n',
      ),
    ).toEqual(['10.0.0.1', '10.0.0.2']);
  });
});
