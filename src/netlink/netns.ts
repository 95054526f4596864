/**
 * Run synchronous code with the calling thread inside another network namespace.
 *
 * Why: a netlink socket belongs to the namespace of the thread that created it, and
 * stays there. Switching the main thread in, creating the socket, and switching back
 * before returning to the event loop is enough: nothing else runs on this thread in
 * between, and libuv's pool threads never move.
 */
import * as fs from 'fs';
import * as path from 'path';

interface NetnsAddon {
  setns(fd: number): void;
}

let addon: NetnsAddon | undefined;
let homeFd: number | undefined;

function native(): NetnsAddon {
  // Loaded lazily so that modules importing src/netlink for types do not need the addon built.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a path known only at run time
  addon ??= require(path.join(__dirname, '../../native/build/Release/weavets_native.node')) as NetnsAddon;
  return addon;
}

/**
 * The namespace this thread started in. Opened once and kept for the process lifetime:
 * the way back must not depend on a path that could be unmounted meanwhile.
 */
function home(): number {
  homeFd ??= fs.openSync('/proc/thread-self/ns/net', 'r');
  return homeFd;
}

/** Open a network namespace path; throws a clear Error if it is missing or not a netns. */
export function openNetns(nsPath: string): number {
  let fd: number;
  try {
    fd = fs.openSync(nsPath, 'r');
  } catch (e) {
    throw new Error(`${nsPath} is not a network namespace: ${(e as Error).message}`, { cause: e });
  }
  return fd;
}

/** Call `fn` with this thread in the namespace at `nsPath`; always switches back. */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const addon = native();
  const back = home();
  const fd = openNetns(nsPath);
  try {
    try {
      addon.setns(fd);
    } catch (e) {
      const code = (e as { code?: string }).code;
      // setns(2) answers EINVAL for an fd that is not a network namespace.
      throw new Error(
        code === 'EINVAL'
          ? `${nsPath} is not a network namespace`
          : `cannot enter network namespace ${nsPath}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    try {
      return fn();
    } finally {
      try {
        addon.setns(back);
      } catch (e) {
        // Staying in a container's namespace would silently misconfigure everything after.
        process.stderr.write(
          `weavets: FATAL: cannot return to the original network namespace: ${(e as Error).message}\n`,
        );
        process.abort();
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}
