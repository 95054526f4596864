/** `connect` and `forget`: add or drop connection targets on the running daemon. */
import type { Command } from 'commander';
import { clientFor, stateDirOf } from './context';
import { parsePeerAddress } from './validate';

export function registerPeers(program: Command): void {
  program
    .command('connect')
    .description('connect to more peers (host or host:port)')
    .argument('<peers...>', 'host or host:port')
    .action(async (peers: string[], _flags: unknown, cmd: Command) => {
      const list = peers.map(parsePeerAddress);
      await clientFor(stateDirOf(cmd)).post('/connect', { peers: list });
    });

  program
    .command('forget')
    .description('stop connecting to peers (host or host:port)')
    .argument('<peers...>', 'host or host:port')
    .action(async (peers: string[], _flags: unknown, cmd: Command) => {
      const list = peers.map(parsePeerAddress);
      await clientFor(stateDirOf(cmd)).post('/forget', { peers: list });
    });
}
