/**
 * The daemon in this process: what `weavets launch --foreground` runs, and what the
 * process a background launch starts (daemon-main.ts) runs. Nothing here imports the
 * command line parser, so the background daemon does not keep it resident.
 */
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import { pidFilePath, type DaemonConfig } from '../config';
import { WeavetsError } from '../errors';
import { CappedFileSink, createLogger } from '../log';
import { clientFor } from './context';
import { ExitStatus } from './output';

export function readPid(stateDir: string): number | undefined {
  try {
    const text = fs.readFileSync(pidFilePath(stateDir), 'utf8').trim();
    return /^\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/** Does a daemon answer on the state dir's socket? A socket that hangs counts as alive. */
export async function daemonAnswers(stateDir: string): Promise<boolean> {
  try {
    await clientFor(stateDir, 2000).raw('GET', '/healthz');
    return true;
  } catch (err) {
    if (err instanceof WeavetsError && err.code === 'EWEAVETS_NOT_RUNNING') return false;
    if (err instanceof WeavetsError && /no answer/.test(err.message)) return true;
    throw err;
  }
}

export function alreadyRunning(stateDir: string): WeavetsError {
  const pid = readPid(stateDir);
  return new WeavetsError(
    'EWEAVETS_ALREADY_RUNNING',
    `weavets is already running for state dir ${stateDir} (pid ${pid ?? 'unknown'}); stop it with \`weavets stop\``,
  );
}

/**
 * V8 grows the heap of a process that favours size by a factor of about 1.1 over what
 * survives a full collection instead of up to 4, so an idle daemon does not hold the
 * garbage of a burst (a mesh forming, peers joining) up to a far limit. Measured
 * (bench/scale.ts, sleeve, idle): 25 hosts 79.1 -> 71.7 MB resident, 5 hosts about 1 MB
 * less; sleeve iperf3 no slower in the same run (bench/throughput.ts: 4.23 against 3.98
 * Gbit/s, 3.2 against 2.5 collections per daemon per 5 s).
 * It is set here, at run time, because node refuses V8 flags in NODE_OPTIONS, and this
 * covers every way the daemon starts (a background launch, the installed unit, a
 * container). V8 reads it each time it sizes the heap, so setting it after start works.
 */
export const DAEMON_V8_RUNTIME_FLAG = '--optimize-for-size';

/**
 * Run the daemon in this process until it stops: the pid file, the log sink, SIGTERM and
 * SIGINT. `weavets launch --foreground` and the background launch's child both end here.
 */
export async function launchForeground(config: DaemonConfig): Promise<void> {
  v8.setFlagsFromString(DAEMON_V8_RUNTIME_FLAG);
  // stdout: journald's in a unit; in a background launch the log file, capped here.
  const sink = CappedFileSink.forFd(1, config.logMaxSize) ?? process.stdout;
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
