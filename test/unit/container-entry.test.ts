/**
 * src/cli/container-entry.ts: the image's and the managed plugin's settings (environment)
 * become launch flags; the password never becomes an argument.
 */
import { describe, expect, it } from 'vitest';
import { launchFromEnv } from '../../src/cli/container-entry';
import { buildProgram } from '../../src/cli/main';

describe('launchFromEnv', () => {
  it('turns the settings into launch flags, peers last after --', () => {
    const { argv, password } = launchFromEnv(
      {
        PEERS: '10.0.0.1 10.0.0.2,10.0.0.3',
        ETCD: 'https://10.0.0.5:2379',
        ETCD_CA: '/var/lib/weavets/ca.pem',
        IPALLOC_RANGE: '10.40.0.0/16',
        LOG_LEVEL: 'debug',
        PASSWORD: 'sekrit',
        DOCKER_DRIVER_NAME: 'weavets/net:0.2.0',
        EXTRA_ARGS: ' --datapath  sleeve ',
        UNRELATED: 'x',
      },
      ['--mtu', '1400'],
    );
    expect(argv).toEqual([
      'launch',
      '--foreground',
      '--etcd',
      'https://10.0.0.5:2379',
      '--etcd-ca',
      '/var/lib/weavets/ca.pem',
      '--ipalloc-range',
      '10.40.0.0/16',
      '--log-level',
      'debug',
      '--docker-driver-name',
      'weavets/net:0.2.0',
      '--datapath',
      'sleeve',
      '--mtu',
      '1400',
      '--',
      '10.0.0.1',
      '10.0.0.2',
      '10.0.0.3',
    ]);
    expect(password).toBe('sekrit');
    expect(argv.join(' ')).not.toContain('sekrit');
  });

  it('treats empty settings as unset (docker plugin set X= clears one)', () => {
    expect(launchFromEnv({ PEERS: '', ETCD: ' ', PASSWORD: '' }, [])).toEqual({
      argv: ['launch', '--foreground'],
      password: undefined,
    });
  });

  it('produces flags launch knows', () => {
    const { argv } = launchFromEnv(
      {
        PASSWORD_FILE: '/p',
        ETCD: 'http://a:1',
        ETCD_CERT: '/c',
        ETCD_KEY: '/k',
        ETCD_USER: 'u',
        ETCD_PASSWORD_FILE: '/e',
        DOCKER_PLUGIN_SOCKET: '/run/docker/plugins/weavets.sock',
        DOCKER_HOST: 'unix:///var/run/docker.sock',
      },
      [],
    );
    const launch = buildProgram().commands.find((c) => c.name() === 'launch')!;
    const known = new Set(launch.options.map((o) => o.long));
    for (const a of argv.filter((x) => x.startsWith('--') && x !== '--' && x !== '--foreground'))
      expect(known.has(a), a).toBe(true);
  });
});
