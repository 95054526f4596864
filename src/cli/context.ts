/** What every command shares: the state dir (global --state-dir) and the API client for it. */
import * as path from 'node:path';
import type { Command } from 'commander';
import { ApiClient } from '../api/client';
import { DEFAULT_STATE_DIR, apiSocketPath } from '../config';

export function stateDirOf(cmd: Command): string {
  const dir = cmd.optsWithGlobals<{ stateDir?: string }>().stateDir;
  // Absolute, so a daemon started from another cwd finds the same place.
  return path.resolve(dir ?? DEFAULT_STATE_DIR);
}

export function clientFor(stateDir: string, timeoutMs = 0): ApiClient {
  return new ApiClient(apiSocketPath(stateDir), { timeoutMs });
}
