/**
 * The README's promise, taken literally: clone this repository (its committed HEAD) into
 * a temporary directory, run the first command of "The two commands" there, as written,
 * and see the demo succeed. Nothing is prepared first: the clone has no node_modules,
 * no native build and no dist/.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { REPO_ROOT } from '../net/harness';
import { describeWithTools } from '../require-tools';

/** The command lines of the README's "The two commands" block, comments stripped. */
export function readmeCommands(readme: string): string[] {
  const section = readme.split(/^## /m).find((s) => s.startsWith('The two commands'));
  if (section === undefined) throw new Error('README.md has no "The two commands" section');
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('"The two commands" has no ```sh block');
  return block[1]!
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '');
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describeWithTools({ commands: ['git'], other: () => (process.getuid?.() === 0 ? undefined : 'root') })(
  'a fresh clone',
  () => {
    it('has exactly two commands in the README', () => {
      expect(readmeCommands(fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8'))).toHaveLength(2);
    });

    it("runs the README's first command and the demo succeeds", async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weavets-clone-'));
      dirs.push(dir);
      const clone = path.join(dir, 'weavets');
      const c = spawnSync('git', ['clone', '--quiet', REPO_ROOT, clone], { encoding: 'utf8' });
      expect(c.status, c.stderr).toBe(0);
      expect(fs.existsSync(path.join(clone, 'node_modules'))).toBe(false);
      const [first] = readmeCommands(fs.readFileSync(path.join(clone, 'README.md'), 'utf8'));
      // A user's shell: no CI flag, none of this test runner's environment.
      const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: process.env['HOME'], TERM: 'dumb' };
      for (const k of [
        'NODE_EXTRA_CA_CERTS',
        'npm_config_cache',
        'http_proxy',
        'https_proxy',
        'no_proxy',
        'HTTP_PROXY',
        'HTTPS_PROXY',
        'NO_PROXY',
      ]) {
        if (process.env[k] !== undefined) env[k] = process.env[k];
      }
      const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn('bash', ['-c', first!], { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
        child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
        const timer = setTimeout(() => child.kill('SIGINT'), 840_000);
        child.on('close', (code) => {
          clearTimeout(timer);
          resolve({ code, out });
        });
      });
      expect(result.code, result.out.slice(-4000)).toBe(0);
      expect(result.out).toMatch(/all containers reach each other/);
      expect(result.out).toMatch(/demo done in \d+ s/);
      expect(result.out).toMatch(/namespaces and temp files removed/);
      // The set-up left a built checkout behind it: a second run has nothing to install.
      const again = spawnSync(path.join(clone, 'scripts', 'setup'), ['demo'], {
        cwd: clone,
        env,
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(again.status, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/npm packages: node_modules is current/);
      expect(again.stdout).toMatch(/native addon: built/);
      expect(again.stdout).toMatch(/dist\/: current/);
    }, 900_000);
  },
);
