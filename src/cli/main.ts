/**
 * The `weavets` command line: builds the commander program from the command groups and
 * maps every outcome to an exit status (0 ok, 1 failure, 2 bad usage) in one place.
 */
import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_STATE_DIR } from '../config';
import { registerAttach } from './attach';
import { registerCni } from './cni';
import { registerDns } from './dns';
import { registerDiagnostics } from './diagnostics';
import { registerIpam } from './ipam';
import { registerLifecycle } from './launch';
import { EXIT_OK, EXIT_USAGE, debugEnabled, reportError } from './output';
import { registerNetwork } from './network';
import { registerPeers } from './peers';
import { registerStatus } from './status';

const VERSION = '0.1.0';

export function buildProgram(): Command {
  const program = new Command('weavets')
    .description('container overlay network: one daemon per host, containers share layer-2 networks')
    .version(VERSION)
    .addOption(
      new Option('--state-dir <dir>', 'daemon state dir: peer name, API socket, pid file, log')
        .env('WEAVETS_STATE_DIR')
        .default(DEFAULT_STATE_DIR),
    )
    .exitOverride()
    .configureOutput({
      // Usage errors in the house format: "weavets: <message>".
      outputError: (str, write) => write(str.replace(/^error: /, 'weavets: ')),
    });
  registerLifecycle(program);
  registerIpam(program);
  registerPeers(program);
  registerAttach(program);
  registerNetwork(program);
  registerStatus(program);
  registerCni(program);
  registerDns(program);
  registerDiagnostics(program);
  // Subcommands inherit exitOverride/output settings only when set on each.
  for (const cmd of program.commands) {
    cmd.exitOverride().configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, 'weavets: ')) });
  }
  return program;
}

/** Run one command line; resolves to the exit status. */
export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has printed the message (or the help) already.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT_OK : EXIT_USAGE;
    }
    return reportError(err, debugEnabled(argv));
  }
}

export function main(argv: string[]): void {
  run(argv).then(
    (status) => process.exit(status),
    (err: unknown) => process.exit(reportError(err, true)),
  );
}

if (require.main === module) main(process.argv);
