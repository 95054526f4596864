import { describe, expect, it } from 'vitest';
import { HealthGossip, REFRESH_INTERVAL_MS, REPORT_INTERVAL_MS, type HealthDeps } from '../../src/diagnostics/health';
import type { PeerPathStatus } from '../../src/router/overlay';
import { decodeHealthReport } from '../../src/router/health-codec';
import { createLogger } from '../../src/log';

const SELF = 0x0a0000000001;
const PEER = 0x0a0000000002;

/** A HealthGossip over a router and data path made of plain fields the test changes. */
function gossipWith() {
  const sent: Buffer[] = [];
  const path: PeerPathStatus = {
    up: true,
    pmtu: 1400,
    rttMs: 0.5,
    heartbeatsSent: 10,
    heartbeatsAnswered: 10,
    lastAnswerAt: Date.now(),
  } as PeerPathStatus;
  const endpoints: ReturnType<HealthDeps['endpoints']> = [];
  const deps = {
    router: {
      name: SELF,
      uid: 1n,
      topology: {
        entries: () => [
          { name: SELF, connections: [] },
          { name: PEER, connections: [] },
        ],
      },
      connectionStatus: () => [],
      sendHealth: (payload: Buffer) => sent.push(payload),
      setHealthSink: () => undefined,
    },
    datapath: { peerStatus: () => path, peerDatapath: () => 'sleeve' },
    nickname: 'h1',
    endpoints: () => endpoints,
    log: createLogger('error', { write: () => true }),
  } as unknown as HealthDeps;
  const gossip = new HealthGossip(deps);
  return { gossip, sent, path, endpoints };
}

describe('HEALTH rows go out on change, else every REFRESH_INTERVAL_MS', () => {
  it('an unchanged row is sent again only after the refresh interval, whatever its RTT does', () => {
    const { gossip, sent, path } = gossipWith();
    try {
      const t0 = Date.now();
      const at = (ticks: number): number => t0 + ticks * REPORT_INTERVAL_MS;
      gossip.tick(at(0));
      expect(sent).toHaveLength(1);
      path.rttMs = 0.7; // moves every second: not news
      gossip.tick(at(1));
      expect(sent).toHaveLength(1);
      gossip.tick(at(REFRESH_INTERVAL_MS / REPORT_INTERVAL_MS));
      expect(sent).toHaveLength(2);
      // The refreshed row carries the RTT of its time.
      expect(decodeHealthReport(sent[1]!).peers[0]!.rttUs).toBe(700);
    } finally {
      gossip.close();
    }
  });

  it('a path going down, or a new container, goes out at the next tick', () => {
    const { gossip, sent, path, endpoints } = gossipWith();
    try {
      const t0 = Date.now();
      gossip.tick(t0);
      path.up = false;
      gossip.tick(t0 + REPORT_INTERVAL_MS);
      expect(sent).toHaveLength(2);
      expect(decodeHealthReport(sent[1]!).peers[0]!.up).toBe(false);
      // While a peer is down its reason counts the seconds: every tick carries news.
      gossip.tick(t0 + 2 * REPORT_INTERVAL_MS);
      expect(sent).toHaveLength(3);
      path.up = true;
      gossip.tick(t0 + 3 * REPORT_INTERVAL_MS);
      expect(sent).toHaveLength(4);
      endpoints.push({
        endpoint: { id: 'c1', name: 'web', network: 'weavets', address: '10.32.0.2/12', mac: '02:00:00:00:00:01' },
        networkId: 1,
      } as ReturnType<HealthDeps['endpoints']>[number]);
      gossip.tick(t0 + 4 * REPORT_INTERVAL_MS);
      expect(sent).toHaveLength(5);
      expect(decodeHealthReport(sent[4]!).endpoints.map((e) => e.name)).toEqual(['web']);
    } finally {
      gossip.close();
    }
  });
});
