/**
 * The daemon's lifecycle: `launch` (background or --foreground), `stop`, `reset`.
 * A background launch re-executes this CLI with --foreground, detached, and waits for
 * /readyz; the foreground path is the only one that loads the daemon itself.
 */
import { spawn, execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import {
  DEFAULT_HTTP_ADDR,
  DEFAULT_IPALLOC_RANGE,
  DEFAULT_PORT,
  logFilePath,
  pidFilePath,
  type DaemonConfig,
} from '../config';
import { WeavetsError } from '../errors';
import { CappedFileSink, createLogger, DEFAULT_LOG_MAX_SIZE, parseLogSize, type LogLevel } from '../log';
import type { RouterStatus } from '../router/status';
import { clientFor, stateDirOf } from './context';
import { ExitStatus, UsageError, out, warn } from './output';
import { readPasswordFd, readPasswordFile, takePasswordFromEnv } from './secrets';
import { formatCidr, parseCidr } from '../net/ipv4';
import { OVERLAY_ROUTE_TABLE, OVERLAY_RULE_PRIORITY } from '../endpoint/host-routes';
import { applyStoreFlags, storeArgs, type StoreFlags } from './ipam';
import { applyDnsFlags, dnsArgs, type DnsFlags } from './dns';
import {
  parseBindAddress,
  parseHttpAddr,
  parseMtu,
  parseNickname,
  parsePeerAddress,
  parsePeerNameFlag,
  parsePort,
  parseRangeCidr,
} from './validate';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const POLL_MS = 50;
const LOG_TAIL_LINES = 20;

export interface LaunchFlags extends StoreFlags, DnsFlags {
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
  trustedSubnets?: string;
  dockerPluginSocket?: string;
  dockerDriverName?: string;
  dockerHost?: string;
  /** commander's --no-docker-dns-redirect: false when given. */
  dockerDnsRedirect?: boolean;
  policyDryRun?: boolean;
  /** commander's --no-flows: false when given. */
  flows?: boolean;
}

/** Check every flag and build the daemon's config; throws UsageError on the first bad one. */
export function buildDaemonConfig(stateDir: string, peers: string[], flags: LaunchFlags): DaemonConfig {
  const config: DaemonConfig = {
    stateDir,
    nickname: parseNickname(flags.nickname ?? os.hostname()),
    port: parsePort(flags.port, '--port'),
    bindAddress: parseBindAddress(flags.bindAddress),
    ipallocRange: parseRangeCidr(flags.ipallocRange),
    datapath: flags.datapath,
    peers: peers.map(parsePeerAddress),
    httpAddr: parseHttpAddr(flags.httpAddr),
    mtu: parseMtu(flags.mtu),
    logLevel: flags.logLevel,
    trustedSubnets: parseTrustedSubnets(flags.trustedSubnets),
  };
  if (flags.logMaxSize !== undefined) {
    const size = parseLogSize(flags.logMaxSize);
    if (size === undefined || (size > 0 && size < 4096)) {
      throw new UsageError(
        `--log-max-size: want a size such as 10M, 512K or 0 (no cap), at least 4K; got ${JSON.stringify(flags.logMaxSize)}`,
      );
    }
    config.logMaxSize = size;
  }
  if (flags.name !== undefined) config.name = parsePeerNameFlag(flags.name);
  if (flags.passwordFile !== undefined && flags.passwordFd !== undefined) {
    throw new UsageError('--password-file and --password-fd are exclusive');
  }
  if (flags.passwordFile !== undefined) {
    config.passwordFile = flags.passwordFile;
    config.password = readPasswordFile(flags.passwordFile);
  } else if (flags.passwordFd !== undefined) {
    if (!/^\d+$/.test(flags.passwordFd)) throw new UsageError('--password-fd: expected a file descriptor number');
    config.password = readPasswordFd(Number(flags.passwordFd));
  }
  // The environment variable is taken out of our environment whether or not it is used,
  // so nothing we start can inherit it.
  const fromEnv = takePasswordFromEnv();
  if (config.password === undefined && fromEnv !== undefined) config.password = fromEnv;
  applyStoreFlags(config, flags);
  applyDnsFlags(config, flags);
  if (flags.dockerPluginSocket !== undefined) {
    if (flags.dockerPluginSocket !== '' && !flags.dockerPluginSocket.startsWith('/')) {
      throw new UsageError('--docker-plugin-socket: give an absolute path (or "" to turn the Docker plugin off)');
    }
    config.dockerPluginSocket = flags.dockerPluginSocket;
  }
  if (flags.dockerDriverName !== undefined) {
    // Docker's own rule for plugin references: [host/]name[:tag], lower case.
    if (!/^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$/.test(flags.dockerDriverName)) {
      throw new UsageError('--docker-driver-name: want a Docker plugin name such as weavets/net:0.2.0');
    }
    config.dockerDriverName = flags.dockerDriverName;
  }
  if (flags.dockerHost !== undefined) {
    if (!/^(unix:\/\/\/.+|tcp:\/\/[^:/]+:\d+)$/.test(flags.dockerHost))
      throw new UsageError('--docker-host: want unix:///path or tcp://host:port');
    config.dockerHost = flags.dockerHost;
  }
  if (flags.dockerDnsRedirect === false) config.dockerDnsRedirect = false;
  if (flags.policyDryRun === true) config.policyDryRun = true;
  if (flags.flows === false) config.flows = false;
  return config;
}

function parseTrustedSubnets(text: string | undefined): string[] {
  if (text === undefined || text.trim() === '') return [];
  return text.split(',').map((c) => {
    try {
      return formatCidr(parseCidr(c.trim()));
    } catch (err) {
      throw new UsageError(`--trusted-subnets: ${(err as Error).message}`);
    }
  });
}

/** The command line that makes a foreground daemon with exactly this config. */
export function foregroundArgs(config: DaemonConfig): string[] {
  const args = [
    'launch',
    '--foreground',
    '--state-dir',
    config.stateDir,
    '--nickname',
    config.nickname,
    '--port',
    String(config.port),
    '--bind-address',
    config.bindAddress,
    '--ipalloc-range',
    config.ipallocRange,
    '--datapath',
    config.datapath,
    '--http-addr',
    config.httpAddr,
    '--mtu',
    String(config.mtu),
    '--log-level',
    config.logLevel,
  ];
  if (config.logMaxSize !== undefined) args.push('--log-max-size', String(config.logMaxSize));
  if (config.name !== undefined) args.push('--name', config.name);
  if (config.trustedSubnets.length > 0) args.push('--trusted-subnets', config.trustedSubnets.join(','));
  // The password itself never goes in argv: a file path, or a pipe on fd 3.
  if (config.passwordFile !== undefined) args.push('--password-file', config.passwordFile);
  else if (config.password !== undefined) args.push('--password-fd', '3');
  args.push(...storeArgs(config), ...dnsArgs(config));
  if (config.dockerPluginSocket !== undefined) args.push('--docker-plugin-socket', config.dockerPluginSocket);
  if (config.dockerDriverName !== undefined) args.push('--docker-driver-name', config.dockerDriverName);
  if (config.dockerHost !== undefined) args.push('--docker-host', config.dockerHost);
  if (config.dockerDnsRedirect === false) args.push('--no-docker-dns-redirect');
  if (config.policyDryRun === true) args.push('--policy-dry-run');
  if (config.flows === false) args.push('--no-flows');
  return [...args, '--', ...config.peers];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readPid(stateDir: string): number | undefined {
  try {
    const text = fs.readFileSync(pidFilePath(stateDir), 'utf8').trim();
    return /^\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/** Does a daemon answer on the state dir's socket? A socket that hangs counts as alive. */
async function daemonAnswers(stateDir: string): Promise<boolean> {
  try {
    await clientFor(stateDir, 2000).raw('GET', '/healthz');
    return true;
  } catch (err) {
    if (err instanceof WeavetsError && err.code === 'EWEAVETS_NOT_RUNNING') return false;
    if (err instanceof WeavetsError && /no answer/.test(err.message)) return true;
    throw err;
  }
}

function alreadyRunning(stateDir: string): WeavetsError {
  const pid = readPid(stateDir);
  return new WeavetsError(
    'EWEAVETS_ALREADY_RUNNING',
    `weavets is already running for state dir ${stateDir} (pid ${pid ?? 'unknown'}); stop it with \`weavets stop\``,
  );
}

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

function deleteLink(name: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('ip', ['link', 'del', name], (err, _stdout, stderr) => {
      if (!err || /Cannot find device/.test(stderr)) resolve(undefined);
      else resolve(`ip link del ${name}: ${(stderr || err.message).trim()}`);
    });
  });
}

/** The rule a daemon that died left in place (src/endpoint/host-routes.ts); none is fine. */
function deleteOverlayRule(): Promise<void> {
  return new Promise((resolve) => {
    const pref = String(OVERLAY_RULE_PRIORITY);
    execFile('ip', ['rule', 'del', 'pref', pref, 'lookup', String(OVERLAY_ROUTE_TABLE)], () => resolve());
  });
}

const STATE_DIR_MARKERS = ['peer-name', 'links.json', 'weavets.sock', 'weavets.pid', 'weavets.log'];

/**
 * Remove what a daemon that is no longer running left behind: the links it recorded in
 * links.json, then the state dir. Links that cannot be deleted stay recorded.
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
  const linksFile = path.join(stateDir, 'links.json');
  let links: string[] = [];
  if (fs.existsSync(linksFile)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(linksFile, 'utf8'));
    } catch (err) {
      throw new WeavetsError(
        'EWEAVETS_INTERNAL',
        `${linksFile} is not valid JSON (${(err as Error).message}); fix or delete it`,
      );
    }
    if (!Array.isArray(parsed) || !parsed.every((l) => typeof l === 'string')) {
      throw new WeavetsError(
        'EWEAVETS_INTERNAL',
        `${linksFile} is not a JSON array of interface names; fix or delete it`,
      );
    }
    links = parsed as string[];
  }
  const failures: string[] = [];
  const remaining: string[] = [];
  for (const link of links) {
    const failure = await deleteLink(link);
    if (failure) {
      failures.push(failure);
      remaining.push(link);
    }
  }
  if (failures.length > 0) {
    fs.writeFileSync(linksFile, JSON.stringify(remaining) + '\n');
    throw new WeavetsError(
      'EWEAVETS_INTERNAL',
      `could not delete ${failures.length} link(s), state dir kept: ${failures.join('; ')}`,
    );
  }
  await deleteOverlayRule();
  fs.rmSync(stateDir, { recursive: true, force: true });
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
  const script = path.join(__dirname, `main${path.extname(__filename)}`);
  // execArgv carries loaders (tsx in tests) so the child runs the same code we do.
  const viaPipe = config.password !== undefined && config.passwordFile === undefined;
  const child = spawn(process.execPath, [...process.execArgv, script, ...foregroundArgs(config)], {
    detached: true,
    stdio: viaPipe ? ['ignore', fd, fd, 'pipe'] : ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  if (viaPipe) {
    const pipe = child.stdio[3] as import('node:stream').Writable;
    pipe.on('error', () => undefined); // the child died early: reported below
    pipe.end(config.password);
  }
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

async function launchForeground(config: DaemonConfig): Promise<void> {
  // stdout: journald's in a unit; in a background launch the log file, capped here.
  const sink = CappedFileSink.forFd(1, config.logMaxSize ?? DEFAULT_LOG_MAX_SIZE) ?? process.stdout;
  const log = createLogger(config.logLevel, sink);
  const { stateDir } = config;
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  // Before touching the pid file: it belongs to the daemon that is running.
  if (await daemonAnswers(stateDir)) throw alreadyRunning(stateDir);
  const pidFile = pidFilePath(stateDir);
  fs.writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o644 });
  fs.chmodSync(pidFile, 0o644);
  const removePidFile = (): void => {
    if (readPid(stateDir) === process.pid) fs.rmSync(pidFile, { force: true });
  };

  let running: import('../daemon').RunningDaemon;
  try {
    const { startDaemon } = await import('../daemon');
    running = await startDaemon(config, log);
  } catch (err) {
    log.error(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    if (err instanceof Error && config.logLevel === 'debug') log.debug(err.stack ?? '');
    removePidFile();
    throw new ExitStatus(1);
  }

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      log.warn(`second ${signal} while stopping: exiting now`);
      removePidFile();
      process.exit(1);
    }
    signalled = true;
    log.info(`${signal} received: stopping`);
    running.control.shutdown(false).catch((err: unknown) => {
      log.error(`shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await running.stopped;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    removePidFile();
  }
  log.info('stopped');
}

export function registerLifecycle(program: Command): void {
  program
    .command('launch')
    .description('start the daemon (in the background unless --foreground) and connect to PEERs')
    .argument('[peers...]', 'peers to connect to: host or host:port')
    .option('--foreground', 'stay in the foreground (systemd, containers)')
    .option('--name <name>', 'peer name, six hex bytes like 7e:21:0a:b4:19:c2 (default: persisted or random)')
    .option('--nickname <nickname>', 'human-friendly peer name (default: hostname)')
    .option('--port <n>', 'TCP control and UDP data port', String(DEFAULT_PORT))
    .option('--bind-address <ip>', 'address to bind the control and data ports to', '0.0.0.0')
    .option('--ipalloc-range <cidr>', 'range container addresses come from', DEFAULT_IPALLOC_RANGE)
    .addOption(new Option('--datapath <mode>', 'data path').choices(['auto', 'sleeve', 'fastdp']).default('auto'))
    .option('--http-addr <host:port>', 'status and metrics listener; "" turns it off', DEFAULT_HTTP_ADDR)
    .option('--mtu <n>', 'container MTU; 0 derives it from the underlay', '0')
    .addOption(
      new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']).default('info'),
    )
    .option(
      '--log-max-size <size>',
      'when the log is a file (background launch): rotate it at this size, keeping 2 old copies (10M default; K, M, G; 0 = no cap)',
    )
    .option(
      '--password-file <file>',
      'network password (root-only file); or set WEAVETS_PASSWORD. Encrypts and authenticates all peer traffic',
    )
    .addOption(new Option('--password-fd <fd>').hideHelp())
    .option(
      '--trusted-subnets <cidrs>',
      'comma-separated CIDRs of peers whose data may go unencrypted (control stays sealed)',
    )
    .option(
      '--docker-plugin-socket <path>',
      'Docker network + IPAM plugin socket; the driver name is its base name; "" turns it off (default /run/docker/plugins/weavets.sock)',
    )
    .option(
      '--docker-driver-name <name>',
      "the driver name Docker knows this daemon by: a managed plugin's name (weavets/net:0.2.0); default: the plugin socket's base name",
    )
    .option('--docker-host <url>', 'Docker API, for network and container names (default unix:///var/run/docker.sock)')
    .option('--policy-dry-run', 'policies log what they would drop (policy drops) and drop nothing')
    .option(
      '--no-docker-dns-redirect',
      "leave Docker containers' external DNS queries alone (by default they go to weavets DNS, which knows every host's containers)",
    )
    .option(
      '--no-flows',
      'do not count traffic per container pair (`weavets flows`); the data path then does no per-frame accounting',
    )
    .action(async (peers: string[], flags: LaunchFlags, cmd: Command) => {
      const config = buildDaemonConfig(stateDirOf(cmd), peers, flags);
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
