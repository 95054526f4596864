/**
 * The process a background `weavets launch` starts. Its command line is the one
 * childLaunchArgs gives (`launch --foreground --config-fd 3`, so `ps` shows what it is),
 * and it takes the config its parent built, whole, from the pipe on fd 3.
 *
 * It is its own entry, not main.ts, so that the daemon does not load the command line
 * parser and every other command: they would stay resident in it for its whole life
 * (about 0.8 MB; docs/ARCHITECTURE.md, "Memory").
 */
import { CONFIG_FD, childLaunchArgs, readConfigFd } from './config-pipe';
import { launchForeground } from './foreground';
import { EXIT_OK, UsageError, debugEnabled, reportError } from './output';

/** Run the daemon for the arguments after the script; resolves to the exit status. */
export async function daemonMain(args: readonly string[]): Promise<number> {
  try {
    const expected = childLaunchArgs();
    if (args.length !== expected.length || args.some((a, i) => a !== expected[i])) {
      throw new UsageError(
        `this is the daemon a background \`weavets launch\` starts (arguments: ${expected.join(' ')}); run \`weavets launch\` instead`,
      );
    }
    await launchForeground(readConfigFd(String(CONFIG_FD)));
    return EXIT_OK;
  } catch (err) {
    return reportError(err, debugEnabled(args));
  }
}

if (require.main === module) {
  daemonMain(process.argv.slice(2)).then(
    (status) => process.exit(status),
    (err: unknown) => process.exit(reportError(err, true)),
  );
}
