/**
 * The daemon's lifecycle: `launch` (background or --foreground), `stop`, `reset`.
 * A background launch re-executes this CLI with --foreground, detached, hands it the
 * validated config over a pipe (config-pipe.ts), and waits for /readyz; the foreground
 * path is the only one that loads the daemon itself.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { logFilePath, type DaemonConfig } from '../config';
import { WeavetsError } from '../errors';
import { linksFile } from '../endpoint/ledger';
import { STATE_FILE_NAMES } from '../state/state-dir';
import type { LogLevel } from '../log';
import type { RouterStatus } from '../router/status';
import { clientFor, stateDirOf } from './context';
import { ExitStatus, out, warn } from './output';
import { CONFIG_FD, checkConfig, childLaunchArgs, encodeConfig, readConfigFd } from './config-pipe';
import { alreadyRunning, daemonAnswers, launchForeground, readPid } from './foreground';
import { addLaunchOptions, configFromOptions, type FlagValue } from './launch-options';
import { parsePeerAddress } from './validate';

/**
 * Node flags the daemon runs with, which node takes only at start:
 * - a young generation of 1 MB semi-spaces instead of V8's default of up to 16 MB: the
 *   frame path allocates nothing (test/unit/sleeve-allocation.test.ts), so the small
 *   young generation collects about as rarely under traffic, and an idle daemon is
 *   smaller;
 * - one V8 worker thread instead of node's 4: the daemon's heap is small, so concurrent
 *   marking and compiling need no more, and each thread kept about 0.5 MB resident
 *   (bench/scale.ts, 5 hosts: -1.5 MB for 4 -> 1).
 * The background launch passes them here and the installed unit sets them in
 * NODE_OPTIONS (scripts/install); a flag the caller gave node already wins. The V8 flag
 * set at run time is in foreground.ts.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--v8-pool-size=1'];

/**
 * node's arguments for the daemon: the caller's (loaders such as tsx in tests), then ours
 * unless the caller set that flag already, on node's command line or in NODE_OPTIONS.
 */
export function daemonExecArgv(execArgv: readonly string[], nodeOptions = ''): string[] {
  const named = (flag: string): string => flag.split('=')[0]!;
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map(named));
  return [...execArgv, ...DAEMON_NODE_FLAGS.filter((f) => !given.has(named(f)))];
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const POLL_MS = 50;
const LOG_TAIL_LINES = 20;

/** What commander hands the launch action, keyed as optionKey (launch-options.ts) says. */
export interface LaunchFlags {
  foreground?: boolean;
  name?: string;
  nickname?: string;
  port: string;
  bindAddress: string;
  ipallocRange: string;
  datapath: 'auto' | 'sleeve' | 'fastdp';
  httpAddr: string;
  mtu: string;
  logLevel: LogLevel;
  logMaxSize?: string;
  passwordFile?: string;
  /** Internal: the background launcher hands the password over on this fd. */
  passwordFd?: string;
  /** Internal: the background launcher hands the whole validated config over on this fd. */
  configFd?: string;
  trustedSubnets?: string;
  dockerPluginSocket?: string;
  dockerDriverName?: string;
  dockerHost?: string;
  /** commander's --no-docker-dns-redirect: false when given. */
  dockerDnsRedirect?: boolean;
  policyDryRun?: boolean;
  /** commander's --no-flows: false when given. */
  flows?: boolean;
  /** commander's --no-sleeve-express: false when given. */
  sleeveExpress?: boolean;
  /** commander's --no-sleeve-thread: false when given. */
  sleeveThread?: boolean;
  etcd?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  etcdUser?: string;
  etcdPasswordFile?: string;
  advertiseAddress?: string;
  ipamLeaseTtl?: string;
  ipamReclaimGrace?: string;
  ipallocBlock?: string;
  addressRetention?: string;
  /** commander's --no-dns: false when given. */
  dns?: boolean;
  dnsListen?: string;
  dnsDomain?: string;
  dnsTtl?: string;
  dnsResolvConf?: string;
}

/**
 * Check every flag and build the daemon's config; throws UsageError on the first bad one.
 * `env` gives WEAVETS_PASSWORD (taken out of it) and WEAVETS_ETCD_PASSWORD.
 */
export function buildDaemonConfig(
  stateDir: string,
  peers: string[],
  flags: LaunchFlags,
  env: NodeJS.ProcessEnv = process.env,
): DaemonConfig {
  const values = flags as unknown as Record<string, FlagValue>;
  const config = configFromOptions({ stateDir, peers: peers.map(parsePeerAddress) }, values, env);
  // Every field set, every default resolved: a field the table forgot fails here, in tests.
  return checkConfig(config, 'launch options');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  // A zombie has stopped; only its parent has not reaped it yet.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
}

/**
 * Ask the daemon to shut down and wait until it has. Returns false when none was running.
 */
export async function stopDaemon(stateDir: string, removeState: boolean): Promise<boolean> {
  const pid = readPid(stateDir);
  try {
    await clientFor(stateDir, 10_000).post('/shutdown', { removeState });
  } catch (err) {
    if (err instanceof WeavetsError && err.code === 'EWEAVETS_NOT_RUNNING') return false;
    throw err;
  }
  if (pid === undefined) {
    // A connect that races the listener closing is reset rather than refused: that daemon is going too.
    const gone = async (): Promise<boolean> => !(await daemonAnswers(stateDir).catch(() => false));
    if (!(await waitFor(gone, STOP_TIMEOUT_MS))) {
      throw new WeavetsError(
        'EWEAVETS_INTERNAL',
        `the daemon did not stop within ${STOP_TIMEOUT_MS / 1000} s and its pid is unknown`,
      );
    }
    return true;
  }
  if (await waitFor(() => processGone(pid), STOP_TIMEOUT_MS)) return true;
  warn(`the daemon (pid ${pid}) did not stop within ${STOP_TIMEOUT_MS / 1000} s; killing it`);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone meanwhile.
  }
  await waitFor(() => processGone(pid), 2000);
  return true;
}

const { peerName, links, socket, pid, log } = STATE_FILE_NAMES;
const STATE_DIR_MARKERS: string[] = [peerName, links, socket, pid, log];

/**
 * Remove what a daemon that is no longer running left behind: the links it recorded in
 * links.json, the overlay routing rule, then the state dir. Links that cannot be deleted
 * stay recorded.
 */
export async function cleanupStateDir(stateDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = fs.readdirSync(stateDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  // Never rm -rf a directory that was mistyped into --state-dir.
  if (path.resolve(stateDir) === '/' || (entries.length > 0 && !entries.some((e) => STATE_DIR_MARKERS.includes(e)))) {
    throw new WeavetsError(
      'EWEAVETS_CONFLICT',
      `${stateDir} does not look like a weavets state dir (none of ${STATE_DIR_MARKERS.join(', ')}); not removing it`,
    );
  }
  // A StateFileError naming the file and what to do when links.json is unreadable.
  const recorded = ((await linksFile(stateDir).read()) ?? []).length;
  // The daemon's own reset teardown (src/daemon/host-teardown.ts), for what it did not get to.
  const { Netlink } = await import('../netlink');
  const { LinkLedger } = await import('../endpoint/ledger');
  const teardown = await import('../daemon/host-teardown');
  const netlink = Netlink.open();
  try {
    const failures = recorded === 0 ? [] : await teardown.removeRecordedLinks(netlink, await LinkLedger.load(stateDir));
    if (failures.length > 0) {
      throw new WeavetsError(
        'EWEAVETS_INTERNAL',
        `could not delete ${failures.length} link(s), state dir kept: ${failures.join('; ')}`,
      );
    }
    await teardown.removeOverlayRule(netlink).catch((err: unknown) => {
      warn(`could not remove the overlay routing rule: ${err instanceof Error ? err.message : String(err)}`);
    });
  } finally {
    netlink.close();
  }
  await teardown.removeStateDir(stateDir);
}

function logTail(logPath: string, fromOffset: number): string[] {
  try {
    const text = fs.readFileSync(logPath).subarray(fromOffset).toString('utf8');
    return text
      .split('\n')
      .filter((l) => l !== '')
      .slice(-LOG_TAIL_LINES);
  } catch {
    return [];
  }
}

async function launchBackground(config: DaemonConfig): Promise<void> {
  const { stateDir } = config;
  if (await daemonAnswers(stateDir)) throw alreadyRunning(stateDir);
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const logPath = logFilePath(stateDir);
  const fd = fs.openSync(logPath, 'a', 0o600);
  fs.fchmodSync(fd, 0o600);
  const logStart = fs.fstatSync(fd).size;
  // Its own entry (daemon-main.ts): the daemon never loads the command line parser.
  const script = path.join(__dirname, `daemon-main${path.extname(__filename)}`);
  // The config the child runs with, secrets included, goes over a pipe (config-pipe.ts),
  // so the child inherits no password in its environment either.
  const env = { ...process.env };
  delete env['WEAVETS_ETCD_PASSWORD'];
  // execArgv carries loaders (tsx in tests) so the child runs the same code we do.
  const child = spawn(
    process.execPath,
    [...daemonExecArgv(process.execArgv, process.env['NODE_OPTIONS']), script, ...childLaunchArgs()],
    {
      detached: true,
      env,
      stdio: ['ignore', fd, fd, 'pipe'],
    },
  );
  fs.closeSync(fd);
  const pipe = child.stdio[CONFIG_FD] as import('node:stream').Writable;
  pipe.on('error', () => undefined); // the child died early: reported below
  pipe.end(encodeConfig(config));
  let exit: string | undefined;
  child.on('exit', (code, signal) => {
    exit = signal ? `was killed by ${signal}` : `exited with status ${code}`;
  });
  child.on('error', (err) => {
    exit = `could not be started: ${err.message}`;
  });
  child.unref();

  const client = clientFor(stateDir, 1000);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exit !== undefined) {
      const tail = logTail(logPath, logStart);
      process.stderr.write(`weavets: the daemon ${exit} before it was ready; last lines of ${logPath}:\n`);
      process.stderr.write(tail.length ? tail.map((l) => `  ${l}`).join('\n') + '\n' : '  (nothing logged)\n');
      throw new ExitStatus(1);
    }
    if (Date.now() >= deadline) {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGTERM');
        } catch {
          // Already gone.
        }
      }
      throw new WeavetsError(
        'EWEAVETS_INTERNAL',
        `the daemon (pid ${child.pid}) was not ready within ${READY_TIMEOUT_MS / 1000} s and was stopped; see ${logPath}`,
      );
    }
    try {
      const res = await client.raw('GET', '/readyz');
      if (res.status === 200) break;
    } catch {
      // Not listening yet.
    }
    await sleep(POLL_MS);
  }
  const status = await clientFor(stateDir).get<RouterStatus>('/status');
  out(status.name);
}

export function registerLifecycle(program: Command): void {
  const launch = program
    .command('launch')
    .description('start the daemon (in the background unless --foreground) and connect to PEERs')
    .argument('[peers...]', 'peers to connect to: host or host:port');
  addLaunchOptions(launch).action(async (peers: string[], flags: LaunchFlags, cmd: Command) => {
    // A background launch's child takes the config its parent built, whole, from the pipe.
    const config =
      flags.configFd !== undefined && flags.foreground
        ? readConfigFd(flags.configFd)
        : buildDaemonConfig(stateDirOf(cmd), peers, flags);
    if (flags.foreground) await launchForeground(config);
    else await launchBackground(config);
  });

  program
    .command('stop')
    .description('stop the daemon; containers keep their interfaces')
    .action(async (_flags: unknown, cmd: Command) => {
      if (!(await stopDaemon(stateDirOf(cmd), false))) out('weavets is not running');
    });

  program
    .command('reset')
    .description('stop the daemon and remove its bridges, links and state dir')
    .action(async (_flags: unknown, cmd: Command) => {
      const stateDir = stateDirOf(cmd);
      await stopDaemon(stateDir, true);
      // Whatever the daemon did not get to (or when it was not running at all).
      await cleanupStateDir(stateDir);
    });
}
