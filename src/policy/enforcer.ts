/**
 * Puts a compiled ruleset in force on this host: one `nft -f -` (one transaction: the
 * old tables stay whole if anything in the new ones is refused). The first apply of a
 * run replaces both tables whole (the kernel may hold anything: a previous run's
 * tables, or none); after that only what changed is sent (nft-script.ts), and if that
 * is refused (someone changed the tables under us) the full replacement follows, in a
 * transaction of its own, as recovery. Then each weavets
 * bridge's nf_call_iptables set (over rtnetlink, through the daemon's socket: no child
 * process) so bridged IPv4 reaches the stateful table exactly on the bridges that have
 * a policy. Turning it on comes after the table is in place and
 * turning it off after the table is gone, so no moment has a bridge with policy but no
 * rules. Nothing here is undone on a daemon stop: enforcement stays while it is down.
 */
import { spawn } from 'node:child_process';
import { WeavetsError } from '../errors';
import type { Logger } from '../log';
import { POLICY_TABLE, type CompiledRuleset, type NftTable } from './nft';
import { incrementalScript } from './nft-script';

function run(cmd: string, args: string[], stdin?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [stdin === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => reject(new WeavetsError('EWEAVETS_INTERNAL', `${cmd}: ${err.message}`, { cause: err })));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else
        reject(
          new WeavetsError(
            'EWEAVETS_INTERNAL',
            `${cmd} ${args.join(' ')} failed (exit ${code}): ${stderr.trim().split('\n').slice(0, 4).join(' | ')}`,
          ),
        );
    });
    if (child.stdin) {
      // A child that exits before reading everything (nft refusing line 1) is reported
      // by its exit status; the broken pipe itself is no news and must not crash us.
      child.stdin.on('error', () => undefined);
      child.stdin.end(stdin);
    }
  });
}

/** What one apply did, for `policy status`: how it went to nft and how long that took. */
export interface EnforceReport {
  /** `full`: both tables replaced; `incremental`: only what changed; `none`: nothing changed. */
  mode: 'full' | 'incremental' | 'none';
  /** Time in `nft` (the child process, both tries if the incremental one was refused), ms. */
  nftMs: number;
  /** Time setting bridges' nf_call_iptables, ms. */
  bridgesMs: number;
}

/** Sets a bridge's nf_call_iptables (the daemon's: Netlink.setBridge). */
export type SetNfCallIptables = (bridge: string, on: boolean) => Promise<void>;

export class PolicyEnforcer {
  /** Bridges we turned nf_call_iptables on for. */
  private stateful = new Set<string>();
  /** The tables in force as we last applied them; undefined: unknown (start, after reset). */
  private applied: NftTable[] | undefined;

  constructor(
    private readonly log: Logger,
    private readonly setNfCallIptables: SetNfCallIptables,
  ) {}

  /** Apply; throws (with the previous ruleset still in force) when nft refuses it. */
  async apply(compiled: CompiledRuleset, allBridges: readonly string[]): Promise<EnforceReport> {
    const t0 = performance.now();
    const mode = await this.applyTables(compiled);
    const t1 = performance.now();
    await this.setBridges(compiled, allBridges);
    return { mode, nftMs: t1 - t0, bridgesMs: performance.now() - t1 };
  }

  private async applyTables(compiled: CompiledRuleset): Promise<EnforceReport['mode']> {
    const script = this.applied === undefined ? undefined : incrementalScript(this.applied, compiled.tables);
    if (script === '') return 'none';
    if (script !== undefined) {
      try {
        await run('nft', ['-f', '-'], script);
        this.applied = compiled.tables;
        return 'incremental';
      } catch (err) {
        this.log.warn('incremental policy update refused; replacing the policy tables whole', {
          error: (err as Error).message,
        });
      }
    }
    this.applied = undefined;
    await run('nft', ['-f', '-'], compiled.script);
    this.applied = compiled.tables;
    return 'full';
  }

  private async setBridges(compiled: CompiledRuleset, allBridges: readonly string[]): Promise<void> {
    const want = new Set(compiled.statefulBridges);
    for (const bridge of allBridges) {
      const on = want.has(bridge);
      if (on === this.stateful.has(bridge)) continue;
      await this.setNfCallIptables(bridge, on);
      if (on) this.stateful.add(bridge);
      else this.stateful.delete(bridge);
    }
  }

  /**
   * After a restart: bridges may still have nf_call_iptables on from the previous run;
   * take them as ours so a later apply turns them off when no policy needs them.
   */
  adopt(bridges: readonly string[]): void {
    for (const b of bridges) this.stateful.add(b);
  }

  /** `weavets reset`: remove both tables and stop sending bridged frames to the IP hooks. */
  async remove(allBridges: readonly string[]): Promise<void> {
    const script = ['bridge', 'inet']
      .map((f) => `table ${f} ${POLICY_TABLE} {}\ndelete table ${f} ${POLICY_TABLE}\n`)
      .join('');
    await run('nft', ['-f', '-'], script).catch((err: unknown) =>
      this.log.warn('could not remove the policy tables', { error: (err as Error).message }),
    );
    for (const b of allBridges) await this.setNfCallIptables(b, false).catch(() => undefined);
    this.stateful.clear();
    this.applied = undefined;
  }
}
