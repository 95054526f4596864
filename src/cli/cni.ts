/**
 * `weavets setup-cni`: install the CNI plugin (a shim that runs this checkout's
 * dist/cni/main.js with the node running now) and the network configuration list that
 * chains it with portmap. Orchestrators then attach containers with `--network weavets`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_NETWORK } from '../config';
import { stateDirOf } from './context';
import { UsageError, out } from './output';
import { parseNetworkName } from './validate';

export const DEFAULT_CNI_BIN_DIR = '/opt/cni/bin';
export const DEFAULT_CNI_CONF_DIR = '/etc/cni/net.d';
export const CNI_PLUGIN_NAME = 'weavets-cni';
export const CNI_CONFLIST_NAME = '10-weavets.conflist';

export interface SetupCniOptions {
  binDir: string;
  confDir: string;
  stateDir: string;
  /** CNI network name (what `podman run --network NAME` uses). */
  name: string;
  /** weavets network the containers join. */
  network: string;
  /** The built plugin entry, dist/cni/main.js. */
  pluginEntry: string;
  /** Interpreter for the shim. */
  nodePath: string;
  /**
   * The native fast-path binary (native/cni/weavets-cni.c), if built: installed as the
   * plugin, with the Node plugin as its fallback. Undefined: install the Node shim only.
   */
  fastPath?: string;
}

/** The fast path's fallback file: the Node plugin it hands over to when the daemon is away. */
export function fallbackFile(nodePath: string, pluginEntry: string): string {
  return `${nodePath}\n${pluginEntry}\n`;
}

/** The shim: a node script with the interpreter's absolute path (no PATH lookup, no shell). */
export function pluginShim(nodePath: string, pluginEntry: string): string {
  return `#!${nodePath}\n'use strict';\n// Installed by \`weavets setup-cni\`.\nrequire(${JSON.stringify(pluginEntry)}).main();\n`;
}

export function conflist(opts: Pick<SetupCniOptions, 'name' | 'network' | 'stateDir'>): object {
  return {
    // libcni in podman 4.x speaks up to 1.0.0; the plugin answers in whatever version is asked.
    cniVersion: '1.0.0',
    name: opts.name,
    plugins: [
      { type: CNI_PLUGIN_NAME, stateDir: opts.stateDir, network: opts.network },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
}

/** Write via a temp file and rename: runtimes watch the conf dir and must never see half a file. */
function writeAtomic(file: string, text: string, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, text, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

export function setupCni(opts: SetupCniOptions): { plugin: string; conflist: string } {
  if (!fs.existsSync(opts.pluginEntry)) {
    throw new UsageError(`${opts.pluginEntry} is missing: build weavets first (npm run build)`);
  }
  fs.mkdirSync(opts.binDir, { recursive: true, mode: 0o755 });
  fs.mkdirSync(opts.confDir, { recursive: true, mode: 0o755 });
  const plugin = path.join(opts.binDir, CNI_PLUGIN_NAME);
  const list = path.join(opts.confDir, CNI_CONFLIST_NAME);
  if (opts.fastPath !== undefined && fs.existsSync(opts.fastPath)) {
    // Node alone takes longer to start than the reference plugins take for a whole ADD:
    // the installed plugin is the native forwarder, and the Node plugin its fallback.
    writeAtomic(
      path.join(opts.binDir, `${CNI_PLUGIN_NAME}.fallback`),
      fallbackFile(opts.nodePath, opts.pluginEntry),
      0o644,
    );
    const tmp = path.join(opts.binDir, `.${CNI_PLUGIN_NAME}.${process.pid}.tmp`);
    fs.copyFileSync(opts.fastPath, tmp);
    fs.chmodSync(tmp, 0o755);
    fs.renameSync(tmp, plugin);
  } else {
    writeAtomic(plugin, pluginShim(opts.nodePath, opts.pluginEntry), 0o755);
  }
  writeAtomic(list, JSON.stringify(conflist(opts), null, 2) + '\n', 0o644);
  return { plugin, conflist: list };
}

export function registerCni(program: Command): void {
  program
    .command('setup-cni')
    .description(`install ${CNI_PLUGIN_NAME} and ${CNI_CONFLIST_NAME} (weavets chained with portmap)`)
    .option('--bin-dir <dir>', 'where CNI plugins live', DEFAULT_CNI_BIN_DIR)
    .option('--conf-dir <dir>', 'where CNI network configurations live', DEFAULT_CNI_CONF_DIR)
    .option('--name <name>', 'CNI network name', DEFAULT_NETWORK)
    .option('--network <name>', 'weavets network containers join', DEFAULT_NETWORK)
    .option('--node-plugin', 'install the Node plugin itself instead of the native fast path')
    .action(
      (
        flags: { binDir: string; confDir: string; name: string; network: string; nodePlugin?: boolean },
        cmd: Command,
      ) => {
        if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(flags.name)) {
          throw new UsageError(
            `--name: '${flags.name}' is not a CNI network name; use up to 64 letters, digits, _ . -`,
          );
        }
        const name = flags.name;
        const network = parseNetworkName(flags.network);
        if (flags.binDir === '' || flags.confDir === '')
          throw new UsageError('--bin-dir and --conf-dir must not be empty');
        const res = setupCni({
          binDir: path.resolve(flags.binDir),
          confDir: path.resolve(flags.confDir),
          stateDir: stateDirOf(cmd),
          name,
          network,
          pluginEntry: path.resolve(__dirname, '..', 'cni', 'main.js'),
          nodePath: process.execPath,
          ...(flags.nodePlugin
            ? {}
            : { fastPath: path.resolve(__dirname, '..', '..', 'native', 'build', 'Release', CNI_PLUGIN_NAME) }),
        });
        out(`installed ${res.plugin}\nwrote ${res.conflist}`);
      },
    );
}
