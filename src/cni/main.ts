/**
 * weavets-cni entry point. Runs on every container start, so it imports little: node:fs,
 * node:http (through ApiClient) and the small cni/ modules; never commander, the metrics
 * (src/metrics/) or netlink. Reads the environment and stdin once, prints one JSON document on stdout
 * (result, VERSION answer or CNI error), logs on stderr, exits 0 or 1.
 */
import * as fs from 'node:fs';
import { ApiClient } from '../api/client';
import { createLogger, type LogLevel } from '../log';
import { parseCommand, parseInvocation, versionOf } from './invocation';
import { cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus, type DaemonApi } from './plugin';
import { CNI_ERR, CniError, LATEST_VERSION, SUPPORTED_VERSIONS, formatError, isSupportedVersion } from './spec';
import { trustedSocketPath } from './state-dir';

/** ADD may wait behind other attaches on a busy host; past this we tell the runtime to retry. */
const REQUEST_TIMEOUT_MS = 30_000;

export interface RunOutput {
  /** Exit status. */
  status: number;
  /** What goes to stdout ("" for nothing). */
  stdout: string;
}

type Env = Record<string, string | undefined>;

/** One invocation, with I/O injected (tests call this directly). */
export async function runPlugin(env: Env, stdin: string, apiFor: (stateDir: string) => DaemonApi): Promise<RunOutput> {
  const level = (env['WEAVETS_CNI_LOG_LEVEL'] ?? 'warn') as LogLevel;
  const log = createLogger(
    ['debug', 'info', 'warn', 'error'].includes(level) ? level : 'warn',
    process.stderr,
    'weavets-cni',
  );
  const version = versionOf(stdin);
  try {
    const command = parseCommand(env);
    if (command === 'VERSION') {
      const asked = isSupportedVersion(version) ? version : LATEST_VERSION;
      return { status: 0, stdout: JSON.stringify({ cniVersion: asked, supportedVersions: SUPPORTED_VERSIONS }) + '\n' };
    }
    const inv = parseInvocation(command, env, stdin);
    const api = apiFor(inv.conf.stateDir);
    log.debug('invoked', { command, containerId: inv.containerId, ifname: inv.ifname, netns: inv.netns });
    switch (command) {
      case 'ADD':
        return { status: 0, stdout: JSON.stringify(await cmdAdd(inv, api)) + '\n' };
      case 'DEL':
        await cmdDel(inv, api);
        return { status: 0, stdout: '' };
      case 'CHECK':
        await cmdCheck(inv, api);
        return { status: 0, stdout: '' };
      case 'GC':
        await cmdGc(inv, api, log);
        return { status: 0, stdout: '' };
      case 'STATUS':
        await cmdStatus(inv, api);
        return { status: 0, stdout: '' };
    }
  } catch (err) {
    const e =
      err instanceof CniError
        ? err
        : new CniError(CNI_ERR.DAEMON_FAILED, err instanceof Error ? err.message : String(err), undefined, {
            cause: err,
          });
    log.error(e.message, { code: e.code, command: env['CNI_COMMAND'], containerId: env['CNI_CONTAINERID'] });
    return { status: 1, stdout: JSON.stringify(formatError(version, e)) + '\n' };
  }
}

function readStdin(): string {
  try {
    return fs.readFileSync(0, 'utf8');
  } catch (err) {
    // No stdin at all (closed, or a TTY for VERSION by hand) reads as empty.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EOF' || code === 'EBADF') return '';
    throw err;
  }
}

export function main(): void {
  let stdin: string;
  try {
    stdin = readStdin();
  } catch (err) {
    const e = new CniError(
      CNI_ERR.IO_FAILURE,
      `cannot read the network configuration from stdin: ${(err as Error).message}`,
      undefined,
      { cause: err },
    );
    process.stdout.write(JSON.stringify(formatError(LATEST_VERSION, e)) + '\n');
    process.exitCode = 1;
    return;
  }
  const env = process.env;
  // Only the top-level "stateDir" (parseNetConf), and only a root-owned, root-only socket.
  runPlugin(
    env,
    stdin,
    (stateDir) => new ApiClient(trustedSocketPath(stateDir), { timeoutMs: REQUEST_TIMEOUT_MS }),
  ).then(
    (out) => {
      // Let stdout drain (a pipe) before exiting; no process.exit() truncation.
      if (out.stdout !== '') process.stdout.write(out.stdout);
      process.exitCode = out.status;
    },
    (err: unknown) => {
      process.stderr.write(`weavets-cni: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

if (require.main === module) main();
