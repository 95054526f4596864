/**
 * Router and data path metrics. The frame path keeps plain counters in its own objects
 * (a label lookup per frame would cost more than forwarding the frame); these
 * collectors read them when Prometheus scrapes.
 */
import type { Registry } from '../metrics/registry';
import { Gauge } from '../metrics/gauge';
import type { Datapath } from '../router/overlay';
import { counterFromTotals } from '../counter-from-totals';
import type { Router } from '../router/router';
import { parsePeerName } from '../net/peername';

export function registerDaemonMetrics(registry: Registry, router: Router, datapath: Datapath): void {
  const peerLabels = ['peer', 'nickname'] as const;
  const perPeer = (
    name: string,
    help: string,
    pick: (s: NonNullable<ReturnType<Datapath['peerStatus']>>) => number,
  ): void => {
    counterFromTotals({
      name,
      help,
      labelNames: peerLabels,
      registry,
      read(emit) {
        for (const c of router.connectionStatus()) {
          if (c.peer === '') continue;
          const s = datapath.peerStatus(parsePeerName(c.peer));
          if (s) emit({ peer: c.peer, nickname: c.nickname }, pick(s));
        }
      },
    });
  };
  perPeer('weavets_frames_in_total', 'Frames received from a peer (as next hop).', (s) => s.framesIn);
  perPeer('weavets_frames_out_total', 'Frames sent to a peer (as next hop).', (s) => s.framesOut);
  perPeer('weavets_bytes_in_total', 'Frame bytes received from a peer.', (s) => s.bytesIn);
  perPeer('weavets_bytes_out_total', 'Frame bytes sent to a peer.', (s) => s.bytesOut);

  counterFromTotals({
    name: 'weavets_dropped_datagrams_total',
    help: 'Data path datagrams or frames dropped, by reason.',
    labelNames: ['reason'],
    registry,
    read(emit) {
      for (const [reason, n] of datapath.drops()) emit({ reason }, n);
    },
  });
  counterFromTotals({
    name: 'weavets_control_rejected_total',
    help: 'Control connections or messages refused, by reason.',
    labelNames: ['reason'],
    registry,
    read(emit) {
      for (const [reason, n] of router.rejectedCounts()) emit({ reason }, n);
    },
  });
  new Gauge({
    name: 'weavets_connections',
    help: 'Control connections by state.',
    labelNames: ['state'],
    registry,
    collect() {
      this.reset();
      for (const state of ['connecting', 'handshaking', 'established', 'failed']) this.set({ state }, 0);
      for (const [state, n] of router.connectionCounts()) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'weavets_peers',
    help: 'Peers known through gossip, including ourselves.',
    registry,
    collect() {
      this.set(router.topology.entries().length);
    },
  });
  registerExpressMetrics(registry, datapath);
  new Gauge({
    name: 'weavets_fastdp_mac_fdb_entries',
    help: 'Per-MAC FDB entries on the fastdp VXLAN devices (known unicast to its owner only).',
    registry,
    collect() {
      this.set(datapath.kernelMacEntries?.() ?? 0);
    },
  });
  counterFromTotals({
    name: 'weavets_bridge_frames_total',
    help: 'Frames between the data path and a network bridge.',
    labelNames: ['network', 'direction'],
    registry,
    read(emit) {
      for (const n of datapath.networkStats()) {
        emit({ network: String(n.network), direction: 'from_bridge' }, n.framesFromBridge);
        emit({ network: String(n.network), direction: 'to_bridge' }, n.framesToBridge);
      }
    },
  });
}

/** What the sleeve's express path (native/src/express.c) carried in C. */
function registerExpressMetrics(registry: Registry, datapath: Datapath): void {
  counterFromTotals({
    name: 'weavets_sleeve_express_frames_total',
    help: "Frames the sleeve's express path forwarded in C without the daemon's JavaScript: sent to peers, delivered to bridges.",
    labelNames: ['direction'],
    registry,
    read(emit) {
      const n = datapath.expressFrames?.();
      if (n === undefined) return;
      emit({ direction: 'sent' }, n.sent);
      emit({ direction: 'delivered' }, n.delivered);
    },
  });
  counterFromTotals({
    name: 'weavets_sleeve_express_superframes_total',
    help: "Super-frames (TCP segments of up to 64 KiB) the sleeve's express path carried in C as fragment series: cut and sent to peers, rebuilt and delivered to bridges; also counted in weavets_sleeve_express_frames_total.",
    labelNames: ['direction'],
    registry,
    read(emit) {
      const n = datapath.expressFrames?.();
      if (n === undefined) return;
      emit({ direction: 'sent' }, n.superframesSent);
      emit({ direction: 'delivered' }, n.superframesDelivered);
    },
  });
}
