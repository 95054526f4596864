import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { daemonMain } from '../../src/cli/daemon-main';
import { EXIT_USAGE } from '../../src/cli/output';

const ROOT = path.resolve(__dirname, '..', '..');

/** The files a fresh node process has loaded after requiring `entries` (run through tsx). */
function loadedBy(entries: string[]): string[] {
  const script = `${entries.map((e) => `require(${JSON.stringify(path.join(ROOT, e))});`).join('')}
process.stdout.write(JSON.stringify(Object.keys(require.cache)));`;
  const res = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`node exited ${res.status}: ${res.stderr}`);
  return (JSON.parse(res.stdout) as string[]).map((f) => path.relative(ROOT, f));
}

describe('the daemon entry (src/cli/daemon-main.ts)', () => {
  it('refuses any command line but the one a background launch gives it', async () => {
    expect(await daemonMain(['launch'])).toBe(EXIT_USAGE);
    expect(await daemonMain(['launch', '--foreground', '--config-fd', '4'])).toBe(EXIT_USAGE);
  });

  it('keeps what the daemon never uses out of its process', () => {
    // Each of these would stay resident in every daemon for its whole life.
    const loaded = loadedBy(['src/cli/daemon-main.ts', 'src/daemon/index.ts']);
    expect(loaded).toContain(path.join('src', 'daemon', 'index.ts'));
    const unwanted = loaded.filter((f) =>
      /^node_modules\/(commander|prom-client|tweetnacl|sodium-native|ip-address)\/|^node_modules\/netlink\/dist\/index\.js$|^src\/cli\/(main|launch|launch-options)\.ts$/.test(
        f,
      ),
    );
    expect(unwanted).toEqual([]);
  });
});
