/**
 * A lab of network namespaces for multi-host tests, the demo and benchmarks.
 *
 * Layout (every name below the root namespace is private to the lab):
 *
 *   netns <prefix>-u          underlay: bridge "br0", one veth port per host
 *   netns <prefix>-<host>     a host: "eth0" on the underlay, 192.0.2.(10+i)/24, lo up
 *   netns <prefix>-<ctr>      a container: only lo; `weavets attach` gives it an interface
 *
 * Links are created from inside the lab's namespaces (`ip -n ... peer ... netns ...`), so
 * nothing is ever created in the machine's root namespace, not even for an instant. The
 * prefix is "wt" + 4 random hex digits: short (interface names max 15 chars), unique per
 * run. destroy() stops every daemon the lab launched, kills whatever still runs in its
 * namespaces, deletes the namespaces and removes the temp dir; the same runs on process
 * exit, SIGINT and SIGTERM, and a later lab sweeps the leftovers of a lab whose owner
 * process died without cleaning up (SIGKILL).
 *
 * Set WEAVETS_LAB_DEBUG=1 to log every command (to stderr).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const WEAVETS_BIN = path.join(REPO_ROOT, 'bin', 'weavets');
const CLI_ENTRY = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');
const NETNS_DIR = '/run/netns';
const LAB_DIR_PREFIX = 'weavets-lab-';
const UNDERLAY_SUBNET = '192.0.2';
const UNDERLAY_PREFIX_LEN = 24;

const debugEnabled = /^(1|true|yes)$/i.test(process.env.WEAVETS_LAB_DEBUG ?? '');

function debug(msg: string): void {
  if (debugEnabled) process.stderr.write(`[lab ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when killed by a signal (timeout included). */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export interface ExecOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  input?: string;
}

export interface Host {
  name: string;
  /** Namespace name, "<prefix>-<name>". */
  netnsName: string;
  /** Namespace path, "/run/netns/<prefix>-<name>". */
  netns: string;
  /** Underlay address without prefix length, "192.0.2.11". */
  ip: string;
  /** The weavets state dir for this host (in the lab's temp dir). */
  stateDir: string;
  index: number;
}

export interface Namespace {
  name: string;
  netnsName: string;
  netns: string;
  /** For containers: the host it is meant to be attached to, if given. */
  host?: string;
}

export interface PingResult {
  ok: boolean;
  sent: number;
  received: number;
  /** Average RTT in ms, when any reply came back. */
  avgMs?: number;
  output: string;
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** What is awaited, for the error message: "c1 to ping c2". */
  what: string;
  /** What fn last observed (a command's output, a table), added to the timeout's message. */
  lastSeen?: () => string;
}

export interface LabOptions {
  /** Force a prefix (tests of the harness itself); default "wt" + 4 random hex. */
  prefix?: string;
  /** Default timeout of exec(), ms. */
  execTimeoutMs?: number;
}

/** Run a command (argv, no shell), resolve with its output; never rejects on exit code. */
export function run(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  debug(`$ ${argv.map(shellQuote).join(' ')}`);
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (debugEnabled && (code !== 0 || timedOut)) {
        debug(`  -> code=${code} signal=${signal}${timedOut ? ' (timeout)' : ''} ${stderr.trim()}`);
      }
      resolve({ stdout, stderr, code, signal, timedOut });
    };
    child.on('error', (err) => {
      stderr += String(err);
      finish(127, null);
    });
    // Resolve on exit, not on close: a daemon started in the background may keep an
    // inherited pipe open forever. Give the pipes a moment to drain first.
    child.on('exit', (code, signal) => {
      const drained = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal);
      }, 300);
      child.on('close', () => {
        clearTimeout(drained);
        finish(code, signal);
      });
    });
  });
}

function runSync(argv: string[], timeoutMs = 15_000, env: NodeJS.ProcessEnv = process.env): ExecResult {
  debug(`$ ${argv.map(shellQuote).join(' ')}`);
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    timeout: timeoutMs,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return {
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? String(r.error ?? ''),
    code: r.status,
    signal: r.signal,
    timedOut: r.error !== undefined && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT',
  };
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function describeResult(argv: string[], r: ExecResult): string {
  const how = r.timedOut ? 'timed out' : r.code === null ? `killed by ${r.signal}` : `exited ${r.code}`;
  return (
    `\`${argv.map(shellQuote).join(' ')}\` ${how}` +
    (r.stderr.trim() ? `\n  stderr: ${r.stderr.trim()}` : '') +
    (r.stdout.trim() ? `\n  stdout: ${r.stdout.trim().slice(0, 2000)}` : '')
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPidFile(file: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// Process-wide cleanup: every live lab is destroyed on exit and on SIGINT/SIGTERM.

const liveLabs = new Set<Lab>();
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // Last resort, synchronous: an exit handler cannot wait for anything.
  process.on('exit', () => {
    for (const lab of [...liveLabs]) lab.destroySync();
  });
  // On a signal, tear down asynchronously so the event loop keeps running: a parent such
  // as tsx waits for its child to acknowledge the signal over IPC and SIGKILLs it if that
  // does not happen within milliseconds, which a blocking teardown would cause.
  let tearingDown = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (tearingDown) return;
    tearingDown = true;
    process.stderr.write(`\n[lab] ${sig}: tearing down ${liveLabs.size} lab(s)\n`);
    void Promise.allSettled([...liveLabs].map((lab) => lab.destroy())).finally(() => {
      for (const s of SIGNALS) process.removeListener(s, onSignal);
      // Re-raise: the default disposition (or a wrapper's handler) ends the process.
      process.kill(process.pid, sig);
    });
  };
  for (const sig of SIGNALS) process.on(sig, onSignal);
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Delete what labs of dead owner processes left behind (their owner was SIGKILLed). */
function sweepStaleLabs(): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(os.tmpdir());
  } catch {
    return;
  }
  for (const entry of entries) {
    const m = /^weavets-lab-(wt[0-9a-f]{4})$/.exec(entry);
    if (!m) continue;
    const dir = path.join(os.tmpdir(), entry);
    const owner = readPidFile(path.join(dir, 'owner.pid'));
    if (owner !== undefined && pidAlive(owner)) continue;
    const prefix = m[1]!;
    debug(`sweeping stale lab ${prefix}`);
    cleanupByPrefix(prefix, dir);
  }
}

function labNamespaces(prefix: string): string[] {
  try {
    return fs.readdirSync(NETNS_DIR).filter((n) => n.startsWith(`${prefix}-`));
  } catch {
    return [];
  }
}

/** Stop daemons recorded under dir, kill processes in the prefix's namespaces, delete them. */
function cleanupByPrefix(prefix: string, dir: string | undefined): void {
  if (dir !== undefined) {
    for (const pidFile of findPidFiles(dir)) {
      const pid = readPidFile(pidFile);
      if (pid !== undefined && pidAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }
  const names = labNamespaces(prefix);
  for (const ns of names) killNamespaceProcesses(ns);
  for (const ns of names) runSync(['ip', 'netns', 'del', ns]);
  // `weavets attach` writes /etc/netns/<namespace>/resolv.conf for named namespaces.
  let etcNetns: string[] = [];
  try {
    etcNetns = fs.readdirSync('/etc/netns');
  } catch {
    /* none */
  }
  for (const d of etcNetns) {
    if (d.startsWith(`${prefix}-`)) fs.rmSync(path.join('/etc/netns', d), { recursive: true, force: true });
  }
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
}

function findPidFiles(dir: string): string[] {
  const out: string[] = [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...findPidFiles(p));
    else if (e.name === 'weavets.pid') out.push(p);
  }
  return out;
}

/** SIGKILL every process whose network namespace is this lab namespace (ours by construction). */
function killNamespaceProcesses(nsName: string): void {
  const r = runSync(['ip', 'netns', 'pids', nsName], 5_000);
  for (const line of r.stdout.split('\n')) {
    const pid = Number.parseInt(line.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    debug(`kill -9 ${pid} (in ${nsName})`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

// ---------------------------------------------------------------------------------------

export class Lab {
  readonly prefix: string;
  /** Per-run temp dir: state dirs, scratch files. */
  readonly dir: string;
  readonly underlay: Namespace;
  private readonly hosts = new Map<string, Host>();
  private readonly namespaces = new Map<string, Namespace>();
  private readonly launched = new Set<string>();
  private readonly blocked = new Set<string>();
  private blockTableReady = false;
  private destroyed = false;
  private readonly execTimeoutMs: number;

  /** Use createLab(). */
  constructor(opts: LabOptions = {}) {
    this.prefix = opts.prefix ?? `wt${crypto.randomBytes(2).toString('hex')}`;
    this.execTimeoutMs = opts.execTimeoutMs ?? 30_000;
    this.dir = path.join(os.tmpdir(), `${LAB_DIR_PREFIX}${this.prefix}`);
    this.underlay = this.nsRecord('u');
  }

  private nsRecord(short: string, host?: string): Namespace {
    const netnsName = `${this.prefix}-${short}`;
    const rec: Namespace = { name: short, netnsName, netns: path.join(NETNS_DIR, netnsName) };
    if (host !== undefined) rec.host = host;
    return rec;
  }

  /** @internal Called by createLab(). */
  async init(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(this.dir, 'owner.pid'), `${process.pid}\n`);
    liveLabs.add(this);
    installExitHandlers();
    await this.createNamespace(this.underlay);
    const u = this.underlay.netnsName;
    await this.mustRun(['ip', '-n', u, 'link', 'add', 'br0', 'type', 'bridge']);
    await this.mustRun(['ip', '-n', u, 'link', 'set', 'br0', 'up']);
  }

  private async createNamespace(ns: Namespace): Promise<void> {
    if (fs.existsSync(ns.netns)) throw new Error(`namespace ${ns.netnsName} already exists`);
    this.namespaces.set(ns.netnsName, ns);
    await this.mustRun(['ip', 'netns', 'add', ns.netnsName]);
    await this.mustRun(['ip', '-n', ns.netnsName, 'link', 'set', 'lo', 'up']);
  }

  private async mustRun(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await run(argv, { timeoutMs: this.execTimeoutMs, ...opts });
    if (r.code !== 0) throw new Error(describeResult(argv, r));
    return r;
  }

  private checkName(name: string): void {
    if (!/^[a-z0-9][a-z0-9_]{0,8}$/.test(name) || name === 'u') {
      throw new Error(`lab name "${name}": use 1-9 chars [a-z0-9_] (not "u"); it goes into interface names`);
    }
    if (this.namespaces.has(`${this.prefix}-${name}`)) throw new Error(`lab name "${name}" already used`);
  }

  /** A host: a namespace plugged into the underlay bridge, with its own weavets state dir. */
  async addHost(name: string): Promise<Host> {
    this.checkName(name);
    const index = this.hosts.size + 1;
    if (index > 200) throw new Error('too many hosts');
    const ns = this.nsRecord(name);
    const host: Host = {
      name,
      netnsName: ns.netnsName,
      netns: ns.netns,
      ip: `${UNDERLAY_SUBNET}.${10 + index}`,
      stateDir: path.join(this.dir, name, 'state'),
      index,
    };
    this.hosts.set(name, host);
    await this.createNamespace(ns);
    fs.mkdirSync(host.stateDir, { recursive: true, mode: 0o700 });
    const u = this.underlay.netnsName;
    const port = `p${name}`.slice(0, 15);
    await this.mustRun([
      'ip',
      '-n',
      u,
      'link',
      'add',
      port,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.netnsName,
    ]);
    await this.mustRun(['ip', '-n', u, 'link', 'set', port, 'master', 'br0', 'up']);
    await this.mustRun(['ip', '-n', ns.netnsName, 'addr', 'add', `${host.ip}/${UNDERLAY_PREFIX_LEN}`, 'dev', 'eth0']);
    await this.mustRun(['ip', '-n', ns.netnsName, 'link', 'set', 'eth0', 'up']);
    return host;
  }

  /** A container: a bare namespace (lo up); `weavets attach` gives it its interface. */
  async addContainer(name: string): Promise<Namespace>;
  async addContainer(host: Host | string, name: string): Promise<Namespace>;
  async addContainer(a: Host | string, b?: string): Promise<Namespace> {
    const name = b ?? (a as string);
    const hostName = b === undefined ? undefined : typeof a === 'string' ? a : a.name;
    this.checkName(name);
    const ns = this.nsRecord(name, hostName);
    await this.createNamespace(ns);
    return ns;
  }

  /** A bare namespace for anything else (benchmark endpoints, a fuzzer off the underlay). */
  async addNamespace(name: string): Promise<Namespace> {
    this.checkName(name);
    const ns = this.nsRecord(name);
    await this.createNamespace(ns);
    return ns;
  }

  /** Join two lab namespaces with a veth pair and address both ends (CIDRs). */
  async link(
    a: Namespace | Host,
    ifA: string,
    cidrA: string,
    b: Namespace | Host,
    ifB: string,
    cidrB: string,
  ): Promise<void> {
    this.own(a);
    this.own(b);
    await this.mustRun([
      'ip',
      '-n',
      a.netnsName,
      'link',
      'add',
      ifA,
      'type',
      'veth',
      'peer',
      'name',
      ifB,
      'netns',
      b.netnsName,
    ]);
    await this.mustRun(['ip', '-n', a.netnsName, 'addr', 'add', cidrA, 'dev', ifA]);
    await this.mustRun(['ip', '-n', b.netnsName, 'addr', 'add', cidrB, 'dev', ifB]);
    await this.mustRun(['ip', '-n', a.netnsName, 'link', 'set', ifA, 'up']);
    await this.mustRun(['ip', '-n', b.netnsName, 'link', 'set', ifB, 'up']);
  }

  private own(ns: Namespace | Host): void {
    if (!this.namespaces.has(ns.netnsName)) throw new Error(`${ns.netnsName} is not a namespace of lab ${this.prefix}`);
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host "${name}" in lab ${this.prefix}`);
    return h;
  }

  allHosts(): Host[] {
    return [...this.hosts.values()];
  }

  private resolveNs(ns: Namespace | Host | string): string {
    if (typeof ns !== 'string') {
      this.own(ns);
      return ns.netns;
    }
    if (ns.startsWith('/')) return ns;
    const rec = this.namespaces.get(`${this.prefix}-${ns}`);
    if (!rec) throw new Error(`no namespace "${ns}" in lab ${this.prefix}`);
    return rec.netns;
  }

  /** Run argv inside a lab namespace (nsenter --net, not `ip netns exec`: see DESIGN.md). */
  exec(ns: Namespace | Host | string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const nsPath = this.resolveNs(ns);
    return run(['nsenter', `--net=${nsPath}`, '--', ...argv], { timeoutMs: this.execTimeoutMs, ...opts });
  }

  /** exec() that throws (with the command, code and output) unless the exit code is 0. */
  async execOk(ns: Namespace | Host | string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.exec(ns, argv, opts);
    if (r.code !== 0) throw new Error(describeResult([`[${typeof ns === 'string' ? ns : ns.name}]`, ...argv], r));
    return r;
  }

  /** Start a long-running process inside a namespace (iperf3 -s, tcpdump); destroy() kills it. */
  spawnIn(ns: Namespace | Host | string, argv: string[]): import('node:child_process').ChildProcess {
    const nsPath = this.resolveNs(ns);
    const full = ['nsenter', `--net=${nsPath}`, '--', ...argv];
    debug(`$ ${full.map(shellQuote).join(' ')} &`);
    return spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** The environment for the weavets CLI of a host. */
  weavetsEnv(host: Host): NodeJS.ProcessEnv {
    return { ...process.env, WEAVETS_STATE_DIR: host.stateDir };
  }

  /** Run the weavets CLI in a host's namespace with its state dir. */
  weavets(host: Host | string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const h = typeof host === 'string' ? this.host(host) : host;
    return this.exec(h, [process.execPath, WEAVETS_BIN, ...args], { env: this.weavetsEnv(h), ...opts });
  }

  /** weavets() that throws with the output and the host's log tail unless it exits 0. */
  async weavetsOk(host: Host | string, args: string[], opts: ExecOptions = {}): Promise<string> {
    const h = typeof host === 'string' ? this.host(host) : host;
    const r = await this.weavets(h, args, opts);
    if (r.code !== 0) {
      throw new Error(`${describeResult(['weavets', ...args], r)}\n  on host ${h.name}${this.logSection(h)}`);
    }
    return r.stdout;
  }

  /** `weavets ... --json`, parsed. */
  async weavetsJson<T>(host: Host | string, args: string[]): Promise<T> {
    const out = await this.weavetsOk(host, [...args, '--json']);
    try {
      return JSON.parse(out) as T;
    } catch {
      throw new Error(`weavets ${args.join(' ')} --json printed no JSON: ${out.slice(0, 500)}`);
    }
  }

  /** Throw a clear error when the CLI is not built yet (dist/ comes from `npm run build`). */
  requireCli(): void {
    if (!fs.existsSync(CLI_ENTRY)) {
      throw new Error(`weavets CLI not built: ${CLI_ENTRY} is missing (run \`npm run build\`)`);
    }
  }

  /**
   * `weavets launch` on a host: nickname = host name, metrics on 127.0.0.1:6782 of the
   * host's namespace. Resolves when launch returned 0 (the daemon says it is ready).
   */
  async launch(
    host: Host | string,
    peers: string[] = [],
    extraArgs: string[] = [],
    opts: { env?: NodeJS.ProcessEnv } = {},
  ): Promise<void> {
    const h = typeof host === 'string' ? this.host(host) : host;
    this.requireCli();
    this.launched.add(h.name);
    const args = ['launch', '--nickname', h.name, '--http-addr', '127.0.0.1:6782', ...extraArgs, ...peers];
    const r = await this.weavets(h, args, { timeoutMs: 45_000, env: { ...this.weavetsEnv(h), ...opts.env } });
    if (r.code !== 0) {
      throw new Error(`launch on ${h.name} failed: ${describeResult(['weavets', ...args], r)}${this.logSection(h)}`);
    }
  }

  /** `weavets attach --netns <ctr> <id>` on host; returns the CIDR it printed. */
  async attach(host: Host | string, ctr: Namespace, extraArgs: string[] = [], id = ctr.name): Promise<string> {
    const out = (await this.weavetsOk(host, ['attach', '--netns', ctr.netns, ...extraArgs, id])).trim();
    const cidr = out.split('\n').pop()!.trim();
    if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(cidr)) throw new Error(`attach ${id} printed "${out}", not a CIDR`);
    return cidr;
  }

  /** The daemon's pid from its pid file, if any. */
  daemonPid(host: Host | string): number | undefined {
    const h = typeof host === 'string' ? this.host(host) : host;
    return readPidFile(path.join(h.stateDir, 'weavets.pid'));
  }

  /** GET a path of the daemon's HTTP listener (127.0.0.1:6782 inside the host's namespace). */
  async http(host: Host | string, urlPath: string, port = 6782): Promise<{ status: number; body: string }> {
    const script =
      `fetch(${JSON.stringify(`http://127.0.0.1:${port}${urlPath}`)})` +
      `.then(async r=>{process.stdout.write(JSON.stringify({status:r.status,body:await r.text()}))})` +
      `.catch(e=>{process.stderr.write(String(e));process.exit(1)})`;
    const h = typeof host === 'string' ? this.host(host) : host;
    const r = await this.execOk(h, [process.execPath, '-e', script], { timeoutMs: 15_000 });
    return JSON.parse(r.stdout) as { status: number; body: string };
  }

  /**
   * Send `bytes` (8 MiB by default, a fixed pattern) from `from` to `to` (at toIp) over
   * TCP with nc; true when they arrived byte for byte. Both files stay in the lab dir.
   */
  async tcpTransferIntact(from: Namespace, to: Namespace, toIp: string, bytes = 8 * 1024 * 1024): Promise<boolean> {
    const file = path.join(this.dir, `payload-${from.name}`);
    const got = path.join(this.dir, `received-${to.name}`);
    fs.writeFileSync(file, Buffer.from(Array.from({ length: bytes }, (_, i) => (i * 7919) & 0xff)));
    const receiver = this.spawnIn(to, ['sh', '-c', `nc -l 5002 > ${got}`]);
    const exited = new Promise((resolve) => receiver.once('exit', resolve));
    try {
      await this.waitFor(async () => (await this.exec(to, ['sh', '-c', 'ss -ltn | grep -q ":5002 "'])).code === 0, {
        what: `the nc listener in ${to.name}`,
        timeoutMs: 10_000,
      });
      // -N: shut the connection down at the end of the file, so the receiver ends too.
      await this.execOk(from, ['sh', '-c', `nc -N -w 10 ${toIp} 5002 < ${file}`]);
    } catch (err) {
      receiver.kill();
      throw err;
    }
    await exited;
    return fs.readFileSync(got).equals(fs.readFileSync(file));
  }

  /** ping from a namespace; never throws for lost replies. */
  async ping(
    from: Namespace | Host | string,
    ip: string,
    opts: { count?: number; timeoutS?: number; intervalS?: number } = {},
  ): Promise<PingResult> {
    const count = opts.count ?? 3;
    const timeoutS = opts.timeoutS ?? 2;
    const interval = opts.intervalS ?? 0.2;
    const deadline = Math.ceil(count * interval + timeoutS + 1);
    const argv = [
      'ping',
      '-n',
      '-c',
      String(count),
      '-i',
      String(interval),
      '-W',
      String(timeoutS),
      '-w',
      String(deadline),
      ip,
    ];
    const r = await this.exec(from, argv, { timeoutMs: (deadline + 5) * 1000 });
    const output = r.stdout + r.stderr;
    const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
    const sent = m ? Number(m[1]) : 0;
    const received = m ? Number(m[2]) : 0;
    const rtt = /= [\d.]+\/([\d.]+)\/[\d.]+\/[\d.]+ ms/.exec(output);
    const res: PingResult = { ok: received > 0, sent, received, output };
    if (rtt) res.avgMs = Number(rtt[1]);
    return res;
  }

  /**
   * Cut all IPv4 traffic between two hosts' underlay addresses, both directions. The rule
   * lives in the underlay namespace (nftables bridge family on br0), so neither host
   * namespace is touched and hosts see plain loss, as with a broken link.
   */
  async block(a: Host | string, b: Host | string): Promise<void> {
    const [ha, hb] = [typeof a === 'string' ? this.host(a) : a, typeof b === 'string' ? this.host(b) : b];
    await this.ensureBlockTable();
    const key = [ha.ip, hb.ip].sort().join('|');
    if (this.blocked.has(key)) return;
    await this.nft(['add', 'element', 'bridge', 'lab', 'blocked', `{ ${ha.ip} . ${hb.ip}, ${hb.ip} . ${ha.ip} }`]);
    this.blocked.add(key);
  }

  async unblock(a: Host | string, b: Host | string): Promise<void> {
    const [ha, hb] = [typeof a === 'string' ? this.host(a) : a, typeof b === 'string' ? this.host(b) : b];
    const key = [ha.ip, hb.ip].sort().join('|');
    if (!this.blocked.has(key)) return;
    await this.nft(['delete', 'element', 'bridge', 'lab', 'blocked', `{ ${ha.ip} . ${hb.ip}, ${hb.ip} . ${ha.ip} }`]);
    this.blocked.delete(key);
  }

  /** Drop UDP datagrams to `port` between two hosts, both directions (e.g. VXLAN 6784). */
  async blockUdpPort(a: Host | string, b: Host | string, port: number): Promise<void> {
    const [ha, hb] = [typeof a === 'string' ? this.host(a) : a, typeof b === 'string' ? this.host(b) : b];
    await this.ensureBlockTable();
    const key = `${[ha.ip, hb.ip].sort().join('|')}|udp${port}`;
    if (this.blocked.has(key)) return;
    await this.nft([
      'add',
      'element',
      'bridge',
      'lab',
      'blocked_udp',
      `{ ${ha.ip} . ${hb.ip} . ${port}, ${hb.ip} . ${ha.ip} . ${port} }`,
    ]);
    this.blocked.add(key);
  }

  async unblockUdpPort(a: Host | string, b: Host | string, port: number): Promise<void> {
    const [ha, hb] = [typeof a === 'string' ? this.host(a) : a, typeof b === 'string' ? this.host(b) : b];
    const key = `${[ha.ip, hb.ip].sort().join('|')}|udp${port}`;
    if (!this.blocked.has(key)) return;
    await this.nft([
      'delete',
      'element',
      'bridge',
      'lab',
      'blocked_udp',
      `{ ${ha.ip} . ${hb.ip} . ${port}, ${hb.ip} . ${ha.ip} . ${port} }`,
    ]);
    this.blocked.delete(key);
  }

  private async ensureBlockTable(): Promise<void> {
    if (this.blockTableReady) return;
    const ruleset = [
      'table bridge lab {',
      '  set blocked { type ipv4_addr . ipv4_addr; }',
      '  set blocked_udp { type ipv4_addr . ipv4_addr . inet_service; }',
      '  chain forward {',
      '    type filter hook forward priority 0; policy accept;',
      '    ether type ip ip saddr . ip daddr @blocked counter drop',
      '    ether type ip ip saddr . ip daddr . udp dport @blocked_udp counter drop',
      '  }',
      '}',
    ].join('\n');
    await this.execOk(this.underlay, ['nft', '-f', '-'], { input: ruleset });
    this.blockTableReady = true;
  }

  private async nft(args: string[]): Promise<void> {
    await this.execOk(this.underlay, ['nft', ...args]);
  }

  /** Poll fn until it returns a truthy value (returned); errors thrown by fn count as "not yet". */
  async waitFor<T>(fn: () => T | Promise<T>, opts: WaitOptions): Promise<NonNullable<T>> {
    return waitFor(fn, opts);
  }

  /** Last lines of a host's daemon log ("" if none). */
  logTail(host: Host | string, lines = 60): string {
    const h = typeof host === 'string' ? this.host(host) : host;
    try {
      const text = fs.readFileSync(path.join(h.stateDir, 'weavets.log'), 'utf8');
      return text
        .split('\n')
        .slice(-lines - 1)
        .join('\n');
    } catch {
      return '';
    }
  }

  private logSection(h: Host, lines = 40): string {
    const tail = this.logTail(h, lines);
    return tail ? `\n  --- ${h.name} weavets.log (tail) ---\n${tail}` : `\n  (no weavets.log in ${h.stateDir})`;
  }

  /** Print every host's log tail to stderr (call it when a test fails). */
  dumpLogs(lines = 60): void {
    for (const h of this.hosts.values()) {
      const tail = this.logTail(h, lines);
      process.stderr.write(
        `\n===== ${h.name} (${h.ip}) weavets.log, last ${lines} lines =====\n${tail || '(empty or missing)'}\n`,
      );
    }
  }

  /** Stop a host's daemon: `weavets stop`, then the pid file's pid, TERM then KILL. */
  async stopDaemon(host: Host | string, timeoutMs = 10_000): Promise<void> {
    const h = typeof host === 'string' ? this.host(host) : host;
    const pid = this.daemonPid(h);
    await this.weavets(h, ['stop'], { timeoutMs });
    if (pid !== undefined && pidAlive(pid)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      const until = Date.now() + 3_000;
      while (pidAlive(pid) && Date.now() < until) await sleep(100);
      if (pidAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    this.launched.delete(h.name);
  }

  /** Tear everything down. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    await Promise.allSettled([...this.launched].map((name) => this.stopDaemon(name)));
    this.destroySync();
  }

  /** The synchronous teardown used from exit and signal handlers. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    liveLabs.delete(this);
    for (const name of this.launched) {
      const h = this.hosts.get(name)!;
      runSync([process.execPath, WEAVETS_BIN, 'stop'], 8_000, { ...process.env, WEAVETS_STATE_DIR: h.stateDir });
    }
    this.launched.clear();
    cleanupByPrefix(this.prefix, this.dir);
  }
}

/** Poll fn until it returns a truthy value; on timeout throw naming what was awaited. */
export async function waitFor<T>(fn: () => T | Promise<T>, opts: WaitOptions): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const intervalMs = opts.intervalMs ?? 250;
  const start = Date.now();
  let last: string;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = `last result: ${JSON.stringify(v)}`;
    } catch (err) {
      last = `last error: ${(err as Error).message ?? String(err)}`;
    }
    if (Date.now() - start >= timeoutMs) {
      const seen = opts.lastSeen === undefined ? '' : `; last seen: ${opts.lastSeen()}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what}; ${last}${seen}`);
    }
    await sleep(intervalMs);
  }
}

/** Build a lab: its underlay namespace and bridge. Always pair with lab.destroy(). */
export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  if (process.getuid && process.getuid() !== 0) throw new Error('the namespace lab needs root');
  sweepStaleLabs();
  const lab = new Lab(opts);
  try {
    await lab.init();
  } catch (err) {
    lab.destroySync();
    throw err;
  }
  return lab;
}

/** Names of namespaces that carry a prefix (for tests asserting a clean teardown). */
export function namespacesWithPrefix(prefix: string): string[] {
  return labNamespaces(prefix);
}
