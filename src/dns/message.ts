/**
 * One DNS query in, one decision out: answer it (authoritatively, from the record
 * table), forward it upstream, or drop it. Pure: no sockets, so crafted packets and junk
 * are tested directly (test/unit/dns-message.test.ts).
 *
 * Zones we answer for: the domain (weavets.local) and the reverse names of the overlay
 * range; plus single-label names we hold a record for ("db." as db.weavets.local).
 * Everything else is forwarded.
 */
import * as dnsPacket from 'dns-packet';
import type { Cidr } from '../net/ipv4';
import { contains, parseIpv4 } from '../net/ipv4';
import { addressOfReverseName, inZone, normalizeName } from './names';
import type { RecordView } from './records';

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const HEADER_BYTES = 12;
/** Classic DNS over UDP without EDNS. */
export const UDP_DEFAULT_SIZE = 512;
/** We never answer UDP above this, whatever EDNS offers (fragmentation). */
export const UDP_MAX_SIZE = 4096;
const TCP_MAX_SIZE = 65535;

export interface ZoneConfig {
  /** Normalized, no trailing dot: "weavets.local". */
  domain: string;
  ttl: number;
  /** Overlay range: reverse names inside it are ours. */
  range: Cidr;
}

export type QueryOutcome =
  { kind: 'answer'; response: Buffer; rcode: number } | { kind: 'forward'; query: dnsPacket.Packet } | { kind: 'drop' };

/** Which zone a name falls in: the forward domain, our reverse range, or neither. */
export function zoneOf(name: string, zone: ZoneConfig): 'forward' | 'reverse' | undefined {
  if (inZone(name, zone.domain)) return 'forward';
  const ip = addressOfReverseName(name);
  if (ip !== undefined && contains(zone.range, parseIpv4(ip))) return 'reverse';
  return undefined;
}

/** One label, no dots ("db"): a name Docker's resolver passes on as asked. */
function isShortName(name: string): boolean {
  return name !== '' && !name.includes('.');
}

/** A bare header answer with `rcode`, echoing id and RD: for what we cannot parse. */
export function headerOnlyResponse(query: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out.writeUInt16BE(query.readUInt16BE(0), 0);
  out.writeUInt16BE(FLAG_QR | (query.readUInt16BE(2) & (FLAG_RD | 0x7800)) | FLAG_RA | rcode, 2);
  return out;
}

function soa(zone: ZoneConfig): dnsPacket.Answer {
  return {
    type: 'SOA',
    name: zone.domain,
    ttl: zone.ttl,
    data: {
      mname: `ns.${zone.domain}`,
      rname: `hostmaster.${zone.domain}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: zone.ttl,
    },
  };
}

function ednsSize(q: dnsPacket.Packet): number | undefined {
  const opt = q.additionals?.find((a) => a.type === 'OPT');
  return opt === undefined ? undefined : opt.udpPayloadSize;
}

/** Build the response for `q` with these sections and rcode; truncated with TC when over `limit`. */
export function buildResponse(
  q: dnsPacket.Packet,
  rcode: number,
  answers: dnsPacket.Answer[],
  authorities: dnsPacket.Answer[],
  opts: { authoritative: boolean; limit: number },
): Buffer {
  const edns = ednsSize(q);
  const additionals: dnsPacket.Answer[] =
    edns === undefined
      ? []
      : [
          {
            type: 'OPT',
            name: '.',
            udpPayloadSize: UDP_MAX_SIZE,
            extendedRcode: 0,
            ednsVersion: 0,
            flags: 0,
            flag_do: false,
            options: [],
          } as unknown as dnsPacket.Answer,
        ];
  const flags = ((q.flags ?? 0) & (FLAG_RD | 0x7800)) | FLAG_RA | (opts.authoritative ? FLAG_AA : 0) | rcode;
  const packet: dnsPacket.Packet = {
    type: 'response',
    id: q.id ?? 0,
    flags,
    questions: q.questions ?? [],
    answers,
    authorities,
    additionals,
  };
  let buf = dnsPacket.encode(packet);
  if (buf.length > opts.limit) {
    // The client retries over TCP on TC; send the question only.
    buf = dnsPacket.encode({ ...packet, flags: flags | FLAG_TC, answers: [], authorities: [] });
  }
  return buf;
}

/**
 * Decide what to do with one query. `transport` sets the size limit: UDP answers over
 * 512 bytes (or the client's EDNS size, at most 4096) are truncated with TC.
 */
export function handleQuery(buf: Buffer, table: RecordView, zone: ZoneConfig, transport: 'udp' | 'tcp'): QueryOutcome {
  if (buf.length < HEADER_BYTES) return { kind: 'drop' };
  // A response sent to us (or a reflected one) is never answered: no loops.
  if ((buf.readUInt16BE(2) & FLAG_QR) !== 0) return { kind: 'drop' };
  // One question, no answers or authorities, at most the EDNS record: checked on the header
  // before decoding, because dns-packet walks whatever counts a packet claims (a junk
  // header with 60000 records costs tens of milliseconds: a flood amplifier).
  if (buf.readUInt16BE(4) !== 1 || buf.readUInt16BE(6) !== 0 || buf.readUInt16BE(8) !== 0 || buf.readUInt16BE(10) > 1) {
    return { kind: 'answer', response: headerOnlyResponse(buf, RCODE.FORMERR), rcode: RCODE.FORMERR };
  }
  let q: dnsPacket.Packet;
  try {
    q = dnsPacket.decode(buf);
  } catch {
    return { kind: 'answer', response: headerOnlyResponse(buf, RCODE.FORMERR), rcode: RCODE.FORMERR };
  }
  const opcode = ((q.flags ?? 0) >> 11) & 0xf;
  if (opcode !== 0) return { kind: 'answer', response: headerOnlyResponse(buf, RCODE.NOTIMP), rcode: RCODE.NOTIMP };
  const questions = q.questions ?? [];
  if (questions.length !== 1) {
    return { kind: 'answer', response: headerOnlyResponse(buf, RCODE.FORMERR), rcode: RCODE.FORMERR };
  }
  const question = questions[0]!;
  const name = normalizeName(question.name);
  const where = zoneOf(name, zone);
  // A single label ("db.") we hold a record for is answered as db.<domain>: Docker's
  // embedded resolver forwards short names as they were asked (docs/DOCKER.md, DNS).
  // Anything else outside our zones, short names we do not know included, goes upstream.
  const short = where === undefined && isShortName(name) && table.hasName(name);
  if (where === undefined && !short) return { kind: 'forward', query: q };
  const edns = ednsSize(q);
  const limit =
    transport === 'tcp' ? TCP_MAX_SIZE : Math.min(UDP_MAX_SIZE, Math.max(UDP_DEFAULT_SIZE, edns ?? UDP_DEFAULT_SIZE));
  const respond = (rcode: number, answers: dnsPacket.Answer[], authorities: dnsPacket.Answer[]): QueryOutcome => ({
    kind: 'answer',
    response: buildResponse(q, rcode, answers, authorities, { authoritative: true, limit }),
    rcode,
  });
  const cls = question.class ?? 'IN';
  if (cls !== 'IN' && cls !== 'ANY') return respond(RCODE.REFUSED, [], []);

  if (short) {
    // The name is not in our zone: no SOA of ours in a NODATA answer (out of bailiwick).
    if (question.type !== 'A' && (question.type as string) !== 'ANY') return respond(RCODE.NOERROR, [], []);
    return respond(
      RCODE.NOERROR,
      table.rotated(name).map((ip) => ({ type: 'A', name: question.name, ttl: zone.ttl, data: ip })),
      [],
    );
  }

  if (where === 'reverse') {
    const ip = addressOfReverseName(name)!;
    const names = table.names(ip);
    if (names.length === 0) return respond(RCODE.NXDOMAIN, [], [soa(zone)]);
    if (question.type !== 'PTR' && (question.type as string) !== 'ANY') return respond(RCODE.NOERROR, [], [soa(zone)]);
    return respond(
      RCODE.NOERROR,
      names.map((n) => ({ type: 'PTR', name: question.name, ttl: zone.ttl, data: `${n}.${zone.domain}` })),
      [],
    );
  }

  if (name === zone.domain) {
    if (question.type === 'SOA') return respond(RCODE.NOERROR, [soa(zone)], []);
    return respond(RCODE.NOERROR, [], [soa(zone)]);
  }
  const rel = name.slice(0, -(zone.domain.length + 1));
  if (!table.hasName(rel)) return respond(RCODE.NXDOMAIN, [], [soa(zone)]);
  if (question.type !== 'A' && (question.type as string) !== 'ANY') return respond(RCODE.NOERROR, [], [soa(zone)]);
  return respond(
    RCODE.NOERROR,
    table.rotated(rel).map((ip) => ({ type: 'A', name: question.name, ttl: zone.ttl, data: ip })),
    [],
  );
}

/** SERVFAIL for a query we could decode but not resolve (every upstream failed). */
export function servfail(q: dnsPacket.Packet): Buffer {
  return buildResponse(q, RCODE.SERVFAIL, [], [], { authoritative: false, limit: TCP_MAX_SIZE });
}
