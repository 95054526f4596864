/**
 * Which daemon socket the plugin may talk to. Whoever can write the state dir (or any
 * directory above it) can put their own socket there and receive every invocation, so
 * before connecting: the state dir's real path, every directory on it owned by root and
 * writable by no one else (a sticky directory such as /tmp is fine above the state dir),
 * and the socket, if present, a socket owned by root that no one else may write. The
 * checked real path is what we connect to, so a symlink swapped afterwards changes
 * nothing. native/cni/weavets-cni.c applies the same rules (and hands a refusal to this
 * plugin to report). Only node:fs: the plugin starts on every pod.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { STATE_FILE_NAMES } from '../state/state-dir';
import { CNI_ERR, CniError } from './spec';

const SOCKET_NAME = STATE_FILE_NAMES.socket;

function mode(st: fs.Stats): string {
  return (st.mode & 0o7777).toString(8).padStart(4, '0');
}

/** What is wrong with trusting `dir` (the last, `isStateDir`, may not be sticky-writable). */
function dirProblem(dir: string, isStateDir: boolean): string | undefined {
  const st = fs.lstatSync(dir);
  if (st.uid !== 0) return `${dir} is owned by uid ${st.uid}, not root`;
  if ((st.mode & 0o022) !== 0 && (isStateDir || (st.mode & 0o1000) === 0))
    return `${dir} is writable by group or others (mode ${mode(st)})`;
  return undefined;
}

/**
 * The socket path to connect to for `stateDir`, after checking it may be trusted. An
 * absent state dir or socket is fine here (connecting fails and the caller reports the
 * daemon is not running). Throws CniError INVALID_CONFIG (7) naming what is wrong.
 */
export function trustedSocketPath(stateDir: string): string {
  let real: string;
  try {
    real = fs.realpathSync(stateDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return path.join(stateDir, SOCKET_NAME);
    throw refuse(stateDir, `cannot resolve it: ${(err as Error).message}`);
  }
  const dirs = ['/'];
  let at = '';
  for (const part of real.split('/').filter((p) => p !== '')) {
    at += `/${part}`;
    dirs.push(at);
  }
  for (let i = 0; i < dirs.length; i++) {
    let problem: string | undefined;
    try {
      problem = dirProblem(dirs[i]!, i === dirs.length - 1);
    } catch (err) {
      problem = `cannot inspect ${dirs[i]}: ${(err as Error).message}`;
    }
    if (problem !== undefined) throw refuse(stateDir, problem);
  }
  const socket = path.join(real, SOCKET_NAME);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socket);
  } catch {
    return socket;
  }
  if (!st.isSocket()) throw refuse(stateDir, `${socket} is not a socket`);
  if (st.uid !== 0) throw refuse(stateDir, `${socket} is owned by uid ${st.uid}, not root`);
  if ((st.mode & 0o022) !== 0) throw refuse(stateDir, `${socket} is writable by group or others (mode ${mode(st)})`);
  return socket;
}

function refuse(stateDir: string, why: string): CniError {
  return new CniError(
    CNI_ERR.INVALID_CONFIG,
    `refusing stateDir ${stateDir}: ${why}; the daemon's state dir and socket must be owned by root and writable by no one else`,
  );
}
