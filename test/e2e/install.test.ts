/**
 * scripts/install into a staging root (--destdir): the unit systemd-analyze verify
 * accepts (against a root holding this machine's system units, so After= and Wants= are
 * checked for real), the root-only defaults file, the installed tree running a daemon
 * in a lab namespace (so its production node_modules are complete), and --uninstall.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { DAEMON_NODE_FLAGS } from '../../src/cli/launch';
import type { RouterStatus } from '../../src/router/status';
import { REPO_ROOT, type Host, type Lab } from '../net/harness';
import { useLab } from '../net/lab-hooks';
import { describeWithTools } from '../require-tools';

const INSTALL = path.join(REPO_ROOT, 'scripts', 'install');
const SYSTEM_UNITS = '/lib/systemd/system';
const dirs: string[] = [];

function tempRoot(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-destdir-'));
  dirs.push(d);
  return d;
}

function install(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(INSTALL, args, { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describeWithTools({ commands: ['systemd-analyze'], files: [path.join(SYSTEM_UNITS, 'network-online.target')] })(
  'scripts/install',
  () => {
    let lab: Lab;
    let host: Host;
    useLab(async (l) => {
      lab = l;
      host = await lab.addHost('h1');
    });

    it('--destdir produces a unit systemd-analyze verify accepts, and root-only defaults', () => {
      const root = tempRoot();
      const r = install(['--destdir', root]);
      expect(r.code, r.out).toBe(0);
      const unitPath = path.join(root, 'etc/systemd/system/weavets.service');
      const unit = fs.readFileSync(unitPath, 'utf8');
      expect(unit).toMatch(
        /^ExecStart=\/usr\/local\/bin\/weavets launch --foreground \$WEAVETS_OPTIONS \$WEAVETS_PEERS$/m,
      );
      expect(unit).toMatch(/^EnvironmentFile=-\/etc\/default\/weavets$/m);
      // The daemon's node flags (src/cli/launch.ts) reach the foreground launch too.
      // Quoted: systemd splits an unquoted Environment= value at blanks.
      expect(unit).toMatch(new RegExp(`^Environment="NODE_OPTIONS=${DAEMON_NODE_FLAGS.join(' ')}"$`, 'm'));
      expect(unit).toMatch(/^Restart=on-failure$/m);
      expect(unit).toMatch(/^After=network-online.target$/m);
      expect(unit).toMatch(/^Wants=network-online.target$/m);
      expect(fs.statSync(path.join(root, 'etc/default/weavets')).mode & 0o777).toBe(0o600);
      expect(fs.readlinkSync(path.join(root, 'usr/local/bin/weavets'))).toBe('/usr/local/lib/weavets/bin/weavets');

      // The machine's own units inside the root, so verify resolves the ordering targets.
      fs.mkdirSync(path.join(root, 'usr/lib/systemd'), { recursive: true });
      fs.cpSync(SYSTEM_UNITS, path.join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
      const ok = spawnSync('systemd-analyze', ['verify', `--root=${root}`, 'weavets.service'], { encoding: 'utf8' });
      expect(ok.status, ok.stderr).toBe(0);
      expect(ok.stderr).not.toMatch(/weavets\.service/);

      // The check is real: a unit whose program is missing is refused.
      fs.writeFileSync(
        unitPath,
        unit.replace('/usr/local/bin/weavets launch', '/usr/local/bin/weavets-missing launch'),
      );
      const bad = spawnSync('systemd-analyze', ['verify', `--root=${root}`, 'weavets.service'], { encoding: 'utf8' });
      expect(bad.status).not.toBe(0);
      expect(bad.stderr).toMatch(/weavets-missing/);
    });

    it('writes --prefix into the unit and the links', () => {
      const root = tempRoot();
      const r = install(['--destdir', root, '--prefix', '/opt/weavets']);
      expect(r.code, r.out).toBe(0);
      const unit = fs.readFileSync(path.join(root, 'etc/systemd/system/weavets.service'), 'utf8');
      expect(unit).toMatch(/^ExecStart=\/opt\/weavets\/bin\/weavets launch --foreground/m);
      expect(fs.readlinkSync(path.join(root, 'opt/weavets/bin/weavets-cni'))).toBe(
        '/opt/weavets/lib/weavets/bin/weavets-cni',
      );
    });

    it('installs a tree that runs the daemon on its own, and --uninstall removes it but keeps the settings', async () => {
      const root = tempRoot();
      expect(install(['--destdir', root]).code).toBe(0);
      // No dev dependencies came along, and nothing from the checkout is needed to run.
      const lib = path.join(root, 'usr/local/lib/weavets');
      expect(fs.existsSync(path.join(lib, 'node_modules', 'vitest'))).toBe(false);
      expect(fs.existsSync(path.join(lib, 'node_modules', 'typescript'))).toBe(false);
      const cli = path.join(lib, 'bin', 'weavets');
      const env = { ...process.env, WEAVETS_STATE_DIR: host.stateDir };
      const launched = await lab.exec(host, [cli, 'launch', '--nickname', 'installed', '--http-addr', ''], {
        env,
        timeoutMs: 60_000,
      });
      expect(launched.code, launched.stderr + lab.logTail(host)).toBe(0);
      try {
        const status = await lab.exec(host, [cli, 'status', '--json'], { env });
        expect((JSON.parse(status.stdout) as RouterStatus).nickname).toBe('installed');
        // The daemon is the installed copy.
        const pid = Number(fs.readFileSync(path.join(host.stateDir, 'weavets.pid'), 'utf8'));
        expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain(lib);
      } finally {
        await lab.exec(host, [cli, 'stop'], { env, timeoutMs: 30_000 });
      }

      const r = install(['--uninstall', '--destdir', root]);
      expect(r.code, r.out).toBe(0);
      expect(fs.existsSync(lib)).toBe(false);
      expect(fs.existsSync(path.join(root, 'usr/local/bin/weavets'))).toBe(false);
      expect(fs.existsSync(path.join(root, 'etc/systemd/system/weavets.service'))).toBe(false);
      expect(fs.existsSync(path.join(root, 'etc/default/weavets'))).toBe(true);
    });
  },
);
