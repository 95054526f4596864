/** Pure parts of diagnostics: route paths, trace planning, flow counting, the page's self-containment. */
import { describe, expect, it } from 'vitest';
import { routePath } from '../../src/router/route-path';
import { Topology, type PeerEntry } from '../../src/router/topology';
import { planTrace, type TraceInputs } from '../../src/diagnostics/trace';
import { FlowCounter, FlowWindow, flowKey, type FlowTotals } from '../../src/diagnostics/flows';
import { flowsRuleset, parseFlowSet } from '../../src/diagnostics/kernel-flows';
import type { HostReport } from '../../src/router/health-codec';
import { STATUS_PAGE_HTML, STATUS_PAGE_CSP } from '../../src/api/status-page';

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function entriesOf(n: number, edges: [number, number][]): PeerEntry[] {
  return Array.from({ length: n }, (_, i) => ({
    name: i + 1,
    nickname: `h${i + 1}`,
    uid: 1n,
    version: 1,
    connections: edges
      .filter(([a, b]) => a === i + 1 || b === i + 1)
      .map(([a, b]) => ({ peer: a === i + 1 ? b : a, address: '', outbound: true, established: true })),
  }));
}

describe('routePath', () => {
  it('follows, hop by hop, the next hop every host computes for itself', () => {
    const rnd = prng(3);
    for (let round = 0; round < 200; round++) {
      const n = 2 + Math.floor(rnd() * 8);
      const edges: [number, number][] = [];
      for (let a = 1; a <= n; a++) for (let b = a + 1; b <= n; b++) if (rnd() < 0.35) edges.push([a, b]);
      const entries = entriesOf(n, edges);
      // Each host's own Topology: its own entry set locally, the others merged from gossip.
      const topo = new Map<number, Topology>();
      for (const e of entries) {
        const t = new Topology({ name: e.name, nickname: e.nickname, uid: 2n });
        t.merge(entries.filter((x) => x.name !== e.name));
        t.setLocalConnections(e.connections);
        topo.set(e.name, t);
      }
      for (let s = 1; s <= n; s++) {
        for (let d = 1; d <= n; d++) {
          const path = routePath(entries, s, d);
          let at = s;
          const walked = [s];
          while (at !== d) {
            const next = topo.get(at)!.unicastNextHop(d);
            if (next === undefined) break;
            walked.push(next);
            at = next;
          }
          if (at === d) expect(path).toEqual(walked);
          else expect(path).toBeUndefined();
        }
      }
    }
  });

  it('ignores edges only one end calls established', () => {
    const entries = entriesOf(2, [[1, 2]]);
    entries[1] = { ...entries[1]!, connections: [] };
    expect(routePath(entries, 1, 2)).toBeUndefined();
  });
});

const H1 = 0x0a0000000001;
const H2 = 0x0a0000000002;
const H3 = 0x0a0000000003;

function lineInputs(): TraceInputs {
  const entries: PeerEntry[] = [
    {
      name: H1,
      nickname: 'host1',
      uid: 1n,
      version: 1,
      connections: [{ peer: H2, address: '', outbound: true, established: true }],
    },
    {
      name: H2,
      nickname: 'host2',
      uid: 1n,
      version: 1,
      connections: [
        { peer: H1, address: '', outbound: false, established: true },
        { peer: H3, address: '', outbound: true, established: true },
      ],
    },
    {
      name: H3,
      nickname: 'host3',
      uid: 1n,
      version: 1,
      connections: [{ peer: H2, address: '', outbound: false, established: true }],
    },
  ];
  const view = (
    peer: number,
    up: boolean,
    datapath: 'sleeve' | 'fastdp',
    reason = '',
  ): HostReport['peers'][number] => ({
    peer,
    up,
    connected: up,
    datapath,
    encrypted: datapath === 'sleeve',
    pmtu: 1438,
    rttUs: up ? 310 : undefined,
    lossPermille: 0,
    silentMs: up ? 100 : 41_000,
    reason,
  });
  const reports: HostReport[] = [
    {
      owner: H1,
      nickname: 'host1',
      uid: 1n,
      seq: 1,
      peers: [view(H2, true, 'sleeve'), view(H3, false, 'sleeve', 'no heartbeat answer for 41 s')],
      endpoints: [{ id: 'c-web', name: 'web', network: 'weavets', networkId: 5, ip: 0x0a200005, mac: 1 }],
    },
    {
      owner: H2,
      nickname: 'host2',
      uid: 1n,
      seq: 1,
      peers: [view(H1, true, 'sleeve'), view(H3, true, 'fastdp')],
      endpoints: [],
    },
    {
      owner: H3,
      nickname: 'host3',
      uid: 1n,
      seq: 1,
      peers: [view(H2, true, 'fastdp')],
      endpoints: [
        { id: 'c-db', name: 'db', network: 'weavets', networkId: 5, ip: 0x0a200907, mac: 2 },
        { id: 'c-other', name: 'other', network: 'blue', networkId: 6, ip: 0x0a200908, mac: 3 },
      ],
    },
  ];
  return {
    self: H1,
    entries,
    reports: reports.map((report) => ({ report, stale: false })),
    dnsAddresses: (name) => (name === 'db.weavets.local' ? ['10.32.9.7'] : []),
    nicknames: new Map([
      [H1, 'host1'],
      [H2, 'host2'],
      [H3, 'host3'],
    ]),
  };
}

describe('planTrace', () => {
  it('names every hop of a relayed route and why the direct one is not used', () => {
    const { result, ends } = planTrace(lineInputs(), 'web', 'db.weavets.local');
    expect(ends).toEqual({ from: H1, to: H3 });
    expect(result.from).toMatchObject({ name: 'web', address: '10.32.0.5', host: { nickname: 'host1' } });
    expect(result.to).toMatchObject({ name: 'db', address: '10.32.9.7', host: { nickname: 'host3' } });
    expect(result.hops.map((h) => [h.from.nickname, h.to.nickname, h.datapath, h.up])).toEqual([
      ['host1', 'host2', 'sleeve', true],
      ['host2', 'host3', 'fastdp', true],
    ]);
    expect(result.hops[0]).toMatchObject({ encrypted: true, pmtu: 1438, rttMs: 0.31 });
    expect(result.relayed).toBe('host1-host3 is down: no heartbeat answer for 41 s');
    expect(result.policy).toEqual({ verdict: 'allow', policy: null, reason: 'no policies' });
    expect(result.reason).toBe('');
  });

  it('resolves ids and addresses as well as names', () => {
    expect(planTrace(lineInputs(), 'c-web', '10.32.9.7').result.to.name).toBe('db');
  });

  it('refuses a trace across networks, saying why', () => {
    const { result, ends } = planTrace(lineInputs(), 'web', 'other');
    expect(ends).toBeUndefined();
    expect(result.reachable).toBe(false);
    expect(result.hops).toEqual([]);
    expect(result.reason).toMatch(/web is on network weavets and other on network blue: networks are isolated/);
  });

  it('names the hop that is down', () => {
    const inputs = lineInputs();
    const row = inputs.reports[1]!.report;
    row.peers[1] = { ...row.peers[1]!, up: false, reason: 'no heartbeat answer for 6 s' };
    const { result } = planTrace(inputs, 'web', 'db');
    expect(result.reason).toBe('host2 -> host3 is down: no heartbeat answer for 6 s');
  });

  it('says when nothing matches', () => {
    expect(() => planTrace(lineInputs(), 'web', 'nosuch')).toThrow(/no container matches 'nosuch'/);
  });
});

describe('FlowCounter and FlowWindow', () => {
  it('counts per (network, source, destination) and forgets idle pairs on compaction', () => {
    const c = new FlowCounter(64);
    for (let i = 0; i < 10; i++) c.record(5, 0x0a0000, 0x000001, 0x0a0000, 0x000002, 100);
    c.record(5, 0x0a0000, 0x000002, 0x0a0000, 0x000001, 60);
    c.record(6, 0x0a0000, 0x000001, 0x0a0000, 0x000002, 1);
    const seen: string[] = [];
    c.forEach((n, s, d, b, p) => seen.push(`${n}/${s.toString(16)}/${d.toString(16)}:${b}/${p}`));
    expect(seen.sort()).toEqual([
      '5/a0000000001/a0000000002:1000/10',
      '5/a0000000002/a0000000001:60/1',
      '6/a0000000001/a0000000002:1/1',
    ]);
    c.compact((n) => n === 5);
    const after: string[] = [];
    c.forEach((n, _s, _d, b, p) => after.push(`${n}:${b}/${p}`));
    expect(after.sort()).toEqual(['5:1000/10', '5:60/1']);
  });

  it('counts overflow instead of growing when full', () => {
    const c = new FlowCounter(16);
    for (let i = 1; i <= 40; i++) c.record(1, 0, i, 0, i + 1, 10);
    expect(c.size).toBeLessThanOrEqual(12);
    expect(c.overflow).toBe(40 - c.size);
  });

  it('answers the traffic since the oldest snapshot of the last minute', () => {
    const w = new FlowWindow();
    const totals = (bytes: number, packets: number): FlowTotals =>
      new Map([[flowKey(1, 2, 3), { net: 1, src: 2, dst: 3, bytes, packets, datapath: 'sleeve' as const }]]);
    w.add(0, totals(100, 1));
    w.add(30_000, totals(500, 5));
    w.add(61_000, totals(900, 9)); // drops the snapshot at 0
    expect(w.delta(totals(1000, 10))).toEqual([{ net: 1, src: 2, dst: 3, bytes: 500, packets: 5, datapath: 'sleeve' }]);
    expect(w.idle(totals(500, 5)).size).toBe(1);
  });
});

describe('kernel flow counters', () => {
  it('reads the counters of the nft set, skipping what is not a VXLAN pair', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        {
          set: {
            family: 'bridge',
            name: 'pairs',
            table: 'weavets_flows',
            elem: [
              {
                elem: {
                  val: { concat: ['wtvabcdef', '0a:00:00:00:00:01', '0a:00:00:00:00:02'] },
                  expires: 100,
                  counter: { packets: 12, bytes: 3400 },
                },
              },
              {
                elem: {
                  val: { concat: ['eth0', '0a:00:00:00:00:01', '0a:00:00:00:00:02'] },
                  counter: { packets: 1, bytes: 1 },
                },
              },
              {
                elem: {
                  val: { concat: ['wtvzz', '0a:00:00:00:00:01', '0a:00:00:00:00:02'] },
                  counter: { packets: 1, bytes: 1 },
                },
              },
              {
                elem: {
                  val: { concat: ['wtv000001', 'nonsense', '0a:00:00:00:00:02'] },
                  counter: { packets: 1, bytes: 1 },
                },
              },
              { elem: { val: 'x' } },
            ],
          },
        },
      ],
    });
    expect([...parseFlowSet(json).values()]).toEqual([
      { net: 0xabcdef, src: 0x0a0000000001, dst: 0x0a0000000002, bytes: 3400, packets: 12, datapath: 'fastdp' },
    ]);
    expect(parseFlowSet('not json').size).toBe(0);
    expect(parseFlowSet('{"nftables": 5}').size).toBe(0);
  });

  it('counts in a bridge filter chain: nothing that turns conntrack on', () => {
    const rules = flowsRuleset();
    expect(rules).toMatch(/table bridge weavets_flows/);
    expect(rules).toMatch(/type filter hook forward/);
    expect(rules).not.toMatch(/type nat|\bct\b/);
  });
});

describe('status page', () => {
  it('is self-contained: no URL to another origin, script allowed by hash only', () => {
    expect(STATUS_PAGE_HTML).not.toMatch(/(src|href)\s*=\s*["']?(https?:)?\/\//i);
    expect(STATUS_PAGE_HTML).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(STATUS_PAGE_CSP).toContain("default-src 'none'");
    expect(STATUS_PAGE_CSP).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(STATUS_PAGE_CSP).toContain("connect-src 'self'");
  });
});
