/**
 * Published ports (`docker run -p`) for containers on weavets networks. Docker's bridge
 * driver does this itself; for a remote driver it hands the bindings to
 * ProgramExternalConnectivity and the driver must do it. We keep one nftables table in the
 * host's namespace, `ip weavets`, whose map `ports` sends (protocol, host port) on any
 * local address to (container address, port); adding or removing a binding is one map
 * element, so rules never pile up. The table outlives a daemon restart (containers keep
 * their ports) and is deleted by `weavets reset` through `clear()`.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import type { PortBinding } from './protocol';

const TABLE = 'weavets';
const RULESET = `table ip ${TABLE} {
  map ports { type inet_proto . inet_service : ipv4_addr . inet_service; }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; fib daddr type local dnat ip to meta l4proto . th dport map @ports; }
  chain output { type nat hook output priority -100; policy accept; fib daddr type local dnat ip to meta l4proto . th dport map @ports; }
}
`;

export interface PortPublisher {
  /** Publish bindings to `ip`; answers them with host ports chosen where Docker gave 0. */
  publish(ip: string, bindings: PortBinding[], taken: Set<string>): Promise<PortBinding[]>;
  unpublish(bindings: PortBinding[]): Promise<void>;
  clear(): Promise<void>;
}

function nft(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`nft ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

export class NftPortPublisher implements PortPublisher {
  private ready = false;

  private async ensureTable(): Promise<void> {
    if (this.ready) return;
    const have = await nft(['list', 'table', 'ip', TABLE]).then(
      () => true,
      () => false,
    );
    if (!have) await nft(['-f', '-'], RULESET);
    // Connections from other hosts are forwarded to the container, as Docker's bridge driver does.
    await fs.writeFile('/proc/sys/net/ipv4/ip_forward', '1\n').catch(() => undefined);
    this.ready = true;
  }

  async publish(ip: string, bindings: PortBinding[], taken: Set<string>): Promise<PortBinding[]> {
    if (bindings.length === 0) return [];
    await this.ensureTable();
    const done: PortBinding[] = [];
    try {
      for (const b of bindings) {
        let hostPort = b.hostPort;
        if (hostPort === 0) {
          hostPort = 49153;
          while (taken.has(`${b.proto}/${hostPort}`) && hostPort < 65535) hostPort++;
        }
        if (taken.has(`${b.proto}/${hostPort}`))
          throw new Error(`host port ${b.proto}/${hostPort} is already published by another container`);
        await nft(['add', 'element', 'ip', TABLE, 'ports', `{ ${b.proto} . ${hostPort} : ${ip} . ${b.port} }`]);
        taken.add(`${b.proto}/${hostPort}`);
        done.push({ ...b, hostPort, hostPortEnd: hostPort });
      }
    } catch (err) {
      await this.unpublish(done);
      throw err;
    }
    return done;
  }

  async unpublish(bindings: PortBinding[]): Promise<void> {
    for (const b of bindings) {
      await nft(['delete', 'element', 'ip', TABLE, 'ports', `{ ${b.proto} . ${b.hostPort} }`]).catch(() => undefined);
    }
  }

  async clear(): Promise<void> {
    await nft(['delete', 'table', 'ip', TABLE]).catch(() => undefined);
    this.ready = false;
  }
}
