/**
 * test/require-tools.ts: what a suite lacks is named, and under CI=true a suite whose
 * tools are missing becomes a failing test instead of a skip.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { missingRequirements } from '../require-tools';

const REPO_ROOT = path.resolve(__dirname, '..', '..');

describe('missingRequirements', () => {
  it('names missing commands and files, and nothing that is there', () => {
    expect(missingRequirements({ commands: ['sh', 'no-such-command-weavets'], files: ['/', '/no/such/file'] })).toEqual(
      ['command no-such-command-weavets', 'file /no/such/file'],
    );
    expect(missingRequirements({ commands: ['sh'], other: () => undefined })).toEqual([]);
    expect(missingRequirements({ other: () => 'root' })).toEqual(['root']);
  });
});

describe('describeWithTools', () => {
  // A suite needing a command that does not exist, run by vitest itself with and without CI.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-require-tools-'));
  const file = path.join(dir, 'needs-tool.test.ts');
  fs.writeFileSync(
    file,
    `import { it } from 'vitest';\nimport { describeWithTools } from ${JSON.stringify(path.join(REPO_ROOT, 'test', 'require-tools'))};\n` +
      `describeWithTools({ commands: ['no-such-command-weavets'] })('needs a tool', () => { it('runs', () => undefined); });\n`,
  );
  const run = (ci: string | undefined): { status: number | null; out: string } => {
    const env = { ...process.env };
    delete env['CI'];
    if (ci !== undefined) env['CI'] = ci;
    const r = spawnSync(path.join(REPO_ROOT, 'node_modules', '.bin', 'vitest'), ['run', '--root', dir, file], {
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: r.status, out: r.stdout + r.stderr };
  };

  it('fails the suite under CI=true, naming what is missing', () => {
    const r = run('true');
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/missing on this machine: command no-such-command-weavets/);
  });

  it('skips it otherwise', () => {
    const r = run(undefined);
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/skipped/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
