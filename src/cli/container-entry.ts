/**
 * The entry point of the weavets image and of the managed Docker plugin built from it
 * (scripts/image, scripts/docker-plugin): settings come from the environment, which is
 * what `docker run -e` and `docker plugin set` can give, and become the flags of
 * `weavets launch --foreground`. Arguments given to the container come last, so they
 * can add peers and flags. The password stays in the environment (WEAVETS_PASSWORD),
 * which launch takes out of it: it is never in argv.
 *
 *   PEERS="10.0.0.1 10.0.0.2"   ETCD="http://10.0.0.5:2379"   IPALLOC_RANGE=10.32.0.0/12
 *   PASSWORD=... | PASSWORD_FILE=/var/lib/weavets/password
 *   ETCD_CA / ETCD_CERT / ETCD_KEY / ETCD_USER / ETCD_PASSWORD_FILE   LOG_LEVEL=info
 *   DOCKER_PLUGIN_SOCKET, DOCKER_DRIVER_NAME, DOCKER_HOST (set by the plugin's config)
 *   EXTRA_ARGS="--datapath sleeve ..."  (split on white space)
 */
import { main } from './main';

/** env name -> launch flag, for the settings that are one value each. */
const FLAG_SETTINGS: [string, string][] = [
  ['PASSWORD_FILE', '--password-file'],
  ['ETCD', '--etcd'],
  ['ETCD_CA', '--etcd-ca'],
  ['ETCD_CERT', '--etcd-cert'],
  ['ETCD_KEY', '--etcd-key'],
  ['ETCD_USER', '--etcd-user'],
  ['ETCD_PASSWORD_FILE', '--etcd-password-file'],
  ['IPALLOC_RANGE', '--ipalloc-range'],
  ['LOG_LEVEL', '--log-level'],
  ['DOCKER_PLUGIN_SOCKET', '--docker-plugin-socket'],
  ['DOCKER_DRIVER_NAME', '--docker-driver-name'],
  ['DOCKER_HOST', '--docker-host'],
];

export interface ContainerLaunch {
  /** The arguments after the program name: `launch --foreground ...`. */
  argv: string[];
  /** WEAVETS_PASSWORD for launch to take, when PASSWORD was set; undefined otherwise. */
  password: string | undefined;
}

/** Unset and empty are the same: `docker plugin set X=` clears a setting. */
function setting(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

export function launchFromEnv(env: NodeJS.ProcessEnv, extra: string[]): ContainerLaunch {
  const argv = ['launch', '--foreground'];
  for (const [name, flag] of FLAG_SETTINGS) {
    const v = setting(env, name);
    if (v !== undefined) argv.push(flag, v);
  }
  const more = setting(env, 'EXTRA_ARGS');
  if (more !== undefined) argv.push(...more.split(/\s+/));
  argv.push(...extra);
  const peers = setting(env, 'PEERS');
  // After `--`, so a peer can never be read as a flag.
  if (peers !== undefined) argv.push('--', ...peers.split(/[\s,]+/).filter((p) => p !== ''));
  const password = env['PASSWORD'] !== undefined && env['PASSWORD'] !== '' ? env['PASSWORD'] : undefined;
  return { argv, password };
}

if (require.main === module) {
  const { argv, password } = launchFromEnv(process.env, process.argv.slice(2));
  // The password reaches launch the way a user would give it, and is not left under a second name.
  delete process.env['PASSWORD'];
  if (password !== undefined) process.env['WEAVETS_PASSWORD'] = password;
  main([process.argv[0]!, 'weavets', ...argv]);
}
