/**
 * Is a path a namespace file? Namespace files (/proc/PID/ns/net, and the bind mounts
 * `ip netns add` makes in /run/netns) live on nsfs; anything else (a regular file, a
 * directory) cannot be entered with setns. Checked before any work is done, so a wrong
 * CNI_NETNS or --netns fails at once with a clear message rather than halfway through.
 * Only node:fs: the CNI plugin imports this and must stay small.
 */
import * as fs from 'node:fs';

/** statfs f_type of nsfs (linux/magic.h). */
export const NSFS_MAGIC = 0x6e736673;

export type NamespaceFileState = 'namespace' | 'missing' | 'other';

export function namespaceFileState(file: string): NamespaceFileState {
  try {
    return fs.statfsSync(file).type === NSFS_MAGIC ? 'namespace' : 'other';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'other';
  }
}
