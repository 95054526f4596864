/**
 * Suites that need tools from outside npm (etcd, dockerd, podman, crun, nft, ...) declare
 * them here instead of calling describe.skipIf themselves. Off CI a missing tool skips
 * the suite with a line saying which; with CI=true (as .ci/run sets) it fails, because a
 * CI log in which a suite quietly did not run says nothing about it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, it } from 'vitest';

export interface Requirements {
  /** Commands that must be on PATH. */
  commands?: string[];
  /** Files that must exist (plugins, binaries outside PATH). */
  files?: string[];
  /** Anything else, as a description of what is missing or undefined. */
  other?: () => string | undefined;
}

/** What of `req` this machine lacks, as human-readable items; empty when nothing. */
export function missingRequirements(req: Requirements): string[] {
  const missing: string[] = [];
  for (const c of req.commands ?? []) {
    if (spawnSync('sh', ['-c', 'command -v "$1"', 'sh', c]).status !== 0) missing.push(`command ${c}`);
  }
  for (const f of req.files ?? []) {
    if (!fs.existsSync(f)) missing.push(`file ${f}`);
  }
  const other = req.other?.();
  if (other !== undefined) missing.push(other);
  return missing;
}

export function underCi(): boolean {
  return process.env['CI'] === 'true' || process.env['CI'] === '1';
}

type SuiteBody = () => void;
type Register = (name: string, body: SuiteBody) => void;

/**
 * `describe` when the requirements are met. Otherwise: under CI a suite of one failing
 * test naming what is missing; elsewhere a skipped suite (and a line on stderr).
 */
export function describeWithTools(req: Requirements): Register {
  const missing = missingRequirements(req);
  if (missing.length === 0) return (name, body) => describe(name, body);
  const what = missing.join(', ');
  if (underCi()) {
    return (name) =>
      describe(name, () => {
        it('has the tools it needs (CI=true: a missing tool fails the suite)', () => {
          throw new Error(`missing on this machine: ${what}; scripts/setup test installs them`);
        });
      });
  }
  return (name, body) => {
    process.stderr.write(`skipping "${name}": missing ${what} (scripts/setup test installs them)\n`);
    describe.skip(name, body);
  };
}

/** The same for a single test inside a suite that otherwise runs anywhere. */
export function itWithTools(
  req: Requirements,
): (name: string, body: () => Promise<void> | void, timeoutMs?: number) => void {
  const missing = missingRequirements(req);
  if (missing.length === 0) return (name, body, timeoutMs) => it(name, body, timeoutMs);
  const what = missing.join(', ');
  if (underCi()) {
    return (name) =>
      it(`${name} (needs ${what})`, () => {
        throw new Error(`missing on this machine: ${what}; scripts/setup test installs them`);
      });
  }
  return (name, body) => it.skip(`${name} (missing ${what})`, body);
}
