import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cidrMinus, compileRuleset, mergeRanges, peerRanges, type CompileInput } from '../../src/policy/nft';
import { validatePolicy } from '../../src/policy/model';
import { parseIpv4 } from '../../src/net/ipv4';
import { FileStore } from '../../src/store/file';
import { silentLogger } from '../../src/log';
import { applyPolicies, removePolicies, removePolicy, GENERATION_KEY, ruleKey } from '../../src/policy/book';

const P = (d: unknown) => validatePolicy(d, { defaultNetwork: 'weavets' });
const r = (a: string, b: string): [number, number] => [parseIpv4(a), parseIpv4(b)];

const base: CompileInput = {
  policies: [],
  endpoints: [
    { id: 'w', network: 'weavets', ip: '10.32.0.2', labels: { app: 'web' }, host: 'h1' },
    { id: 'd', network: 'weavets', ip: '10.32.0.3', labels: { app: 'db' }, host: 'h1' },
    { id: 'x', network: 'weavets', ip: '10.32.0.4', labels: { app: 'x' }, host: 'h2' },
    { id: 'b', network: 'blue', ip: '10.32.0.2', labels: { app: 'web' }, host: 'h2' },
  ],
  localPorts: [
    { network: 'weavets', hostVeth: 'vwt0000aaaa', mac: '02:00:00:00:00:02', ip: '10.32.0.2' },
    { network: 'weavets', hostVeth: 'vwt0000bbbb', mac: '02:00:00:00:00:03', ip: '10.32.0.3' },
  ],
  bridges: [
    {
      network: 'weavets',
      id: 0x123456,
      bridge: 'weavets',
      resolver: { ip: '10.32.0.1', port: 53 },
      addresses: '10.32.0.0/16',
    },
    { network: 'blue', id: 0xabcdef, bridge: 'wtbabcdef' },
  ],
  dryRun: false,
  logGroup: 6783,
  logRate: 10,
};

const DB = P({
  name: 'db-ingress',
  selector: { app: 'db' },
  ingress: [
    {
      from: [{ selector: { app: 'web' } }, { cidr: '10.40.0.0/16', except: ['10.40.9.0/24'] }],
      ports: [
        { protocol: 'tcp', port: 5432 },
        { protocol: 'udp', port: 8000, endPort: 8080 },
      ],
    },
  ],
});

describe('address ranges', () => {
  it('merges, subtracts exceptions and collects peers', () => {
    expect(mergeRanges([r('10.0.0.5', '10.0.0.9'), r('10.0.0.1', '10.0.0.4'), r('10.0.0.20', '10.0.0.20')])).toEqual([
      r('10.0.0.1', '10.0.0.9'),
      r('10.0.0.20', '10.0.0.20'),
    ]);
    expect(cidrMinus('10.40.0.0/16', ['10.40.9.0/24', '10.40.0.0/24'])).toEqual([
      r('10.40.1.0', '10.40.8.255'),
      r('10.40.10.0', '10.40.255.255'),
    ]);
    expect(cidrMinus('10.0.0.0/24', ['10.0.0.0/16'])).toEqual([]);
    expect(
      peerRanges(
        [{ selector: { matchLabels: { app: 'web' }, matchExpressions: [] } }, { cidr: '10.32.0.0/31', except: [] }],
        base.endpoints,
      ),
    ).toEqual([r('10.32.0.0', '10.32.0.2')]);
  });
});

describe('nftables compiler', () => {
  it('without a policy: anti-spoofing only, no stateful table', () => {
    const out = compileRuleset(base);
    expect(out.statefulBridges).toEqual([]);
    expect(out.script).not.toMatch(/table inet weavets_policy \{\n/);
    expect(out.script).not.toContain('ct state');
    expect(out.script.split('\n').slice(0, 4)).toEqual([
      'table bridge weavets_policy {}',
      'delete table bridge weavets_policy',
      'table inet weavets_policy {}',
      'delete table inet weavets_policy',
    ]);
    expect(out.script).toContain(
      '    iifname vmap { "vwt0000aaaa" : jump port_vwt0000aaaa, "vwt0000bbbb" : jump port_vwt0000bbbb }',
    );
    expect(out.script).toContain(
      [
        '  chain port_vwt0000aaaa {',
        '    ether saddr != 02:00:00:00:00:02 limit rate 10/second burst 20 packets log group 6783 prefix "wts 123456 vwt0000aaaa" drop',
        '    ether saddr != 02:00:00:00:00:02 drop',
        '    arp saddr ether != 02:00:00:00:00:02 drop',
        '    arp saddr ip != 10.32.0.2 limit rate 10/second burst 20 packets log group 6783 prefix "wts 123456 vwt0000aaaa" drop',
        '    arp saddr ip != 10.32.0.2 drop',
        '    ether type ip ip saddr != 10.32.0.2 limit rate 10/second burst 20 packets log group 6783 prefix "wts 123456 vwt0000aaaa" drop',
        '    ether type ip ip saddr != 10.32.0.2 drop',
        '    ether type != { ip, arp } drop',
        '  }',
      ].join('\n'),
    );
  });

  it('compiles an ingress policy: vector', () => {
    const out = compileRuleset({ ...base, policies: [DB] });
    expect(out.statefulBridges).toEqual(['weavets']);
    const inet = out.script.slice(out.script.indexOf('table inet weavets_policy {\n'));
    expect(inet).toBe(
      [
        'table inet weavets_policy {',
        '  set n123456_local { type ipv4_addr; elements = { 10.32.0.2, 10.32.0.3 }; }',
        '  set n123456_isolated { type ipv4_addr; elements = { 10.32.0.3 }; }',
        '  set n123456_p0_sel { type ipv4_addr; elements = { 10.32.0.3 }; }',
        '  set n123456_peers0 { type ipv4_addr; flags interval; elements = { 10.32.0.2, 10.40.0.0-10.40.8.255, 10.40.10.0-10.40.255.255 }; }',
        '  chain n123456_egress {',
        '  }',
        '  chain n123456_ingress {',
        '    ip daddr @n123456_p0_sel ip saddr @n123456_peers0 meta l4proto tcp th dport 5432 return',
        '    ip daddr @n123456_p0_sel ip saddr @n123456_peers0 meta l4proto udp th dport 8000-8080 return',
        '    ip daddr @n123456_p0_sel limit rate 10/second burst 20 packets log group 6783 prefix "wtp E i 123456 db-ingress" drop',
        '    ip daddr @n123456_p0_sel drop',
        '  }',
        '  chain n123456_raw {',
        '    ip daddr @n123456_isolated return',
        '    ip saddr @n123456_isolated return',
        '    ip saddr 10.32.0.0/16 ip daddr 10.32.0.0/16 notrack',
        '  }',
        '  chain n123456_fwd {',
        '    ip saddr @n123456_local jump n123456_egress',
        '    ip daddr @n123456_local jump n123456_ingress',
        '  }',
        '  chain n123456_in {',
        '    ip daddr 10.32.0.1 meta l4proto { udp, tcp } th dport 53 accept',
        '    ip saddr @n123456_local jump n123456_egress',
        '  }',
        '  chain n123456_out {',
        '    ip daddr @n123456_local jump n123456_ingress',
        '  }',
        '  chain raw_prerouting {',
        '    type filter hook prerouting priority raw; policy accept;',
        '    iifname vmap { "weavets" : goto n123456_raw }',
        '  }',
        '  chain raw_output {',
        '    type filter hook output priority raw; policy accept;',
        '    oifname vmap { "weavets" : goto n123456_raw }',
        '  }',
        '  chain forward {',
        '    type filter hook forward priority filter; policy accept;',
        '    ct state established,related,untracked accept',
        '    iifname vmap { "weavets" : jump n123456_fwd }',
        '  }',
        '  chain input {',
        '    type filter hook input priority filter; policy accept;',
        '    ct state established,related,untracked accept',
        '    iifname vmap { "weavets" : jump n123456_in }',
        '  }',
        '  chain output {',
        '    type filter hook output priority filter; policy accept;',
        '    ct state established,related,untracked accept',
        '    oifname vmap { "weavets" : jump n123456_out }',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('with a policy here, VXLAN datagrams of this host are not tracked (never a policy bridge frame); without one, nothing about them', () => {
    const withPolicy = compileRuleset({ ...base, policies: [DB], tunnelPort: 6784 }).script;
    expect(withPolicy).toContain(
      [
        '  chain raw_prerouting {',
        '    type filter hook prerouting priority raw; policy accept;',
        '    iifname vmap { "weavets" : goto n123456_raw }',
        '    udp dport 6784 fib daddr type local notrack',
        '  }',
        '  chain raw_output {',
        '    type filter hook output priority raw; policy accept;',
        '    oifname vmap { "weavets" : goto n123456_raw }',
        '    udp dport 6784 notrack',
        '  }',
      ].join('\n'),
    );
    // The frames inside are still tracked and checked: the filter hooks are unchanged.
    expect(withPolicy).toContain('    ct state established,related,untracked accept\n    iifname vmap');
    // No stateful table, no conntrack in the namespace: nothing to exempt.
    expect(compileRuleset({ ...base, tunnelPort: 6784 }).script).not.toContain('6784');
  });

  it('audit mode and dry run log and return instead of dropping', () => {
    const audit = compileRuleset({
      ...base,
      policies: [
        P({
          ...JSON.parse(JSON.stringify({ name: 'db-ingress', selector: { app: 'db' }, ingress: [] })),
          mode: 'audit',
        }),
      ],
    });
    expect(audit.script.slice(audit.script.indexOf('table inet weavets_policy {\n'))).not.toContain(' drop');
    expect(audit.script).toContain(
      '    ip daddr @n123456_p0_sel limit rate 10/second burst 20 packets log group 6783 prefix "wtp A i 123456 db-ingress" return',
    );
    expect(audit.script).toContain('    goto n123456_ingress_audit');
    const dry = compileRuleset({ ...base, policies: [DB], dryRun: true });
    const inet = dry.script.slice(dry.script.indexOf('table inet weavets_policy {\n'));
    expect(inet).not.toContain(' drop');
    expect(inet).toContain('prefix "wtp A i 123456 db-ingress" return');
  });

  it('leaves out policies that select no endpoint here', () => {
    const remoteOnly = P({ name: 'x-only', selector: { app: 'x' }, ingress: [] });
    expect(compileRuleset({ ...base, policies: [remoteOnly] }).statefulBridges).toEqual([]);
    const both = compileRuleset({ ...base, policies: [remoteOnly, DB] });
    expect(both.script).not.toContain('x-only');
    expect(both.script).toContain('db-ingress');
  });

  it('skips networks without a local endpoint, and rules whose peers match nobody', () => {
    const blueOnly = P({
      name: 'blue-p',
      network: 'blue',
      selector: {},
      ingress: [{ from: [{ selector: { app: 'nobody' } }] }],
    });
    expect(compileRuleset({ ...base, policies: [blueOnly] }).statefulBridges).toEqual([]);
    const here = compileRuleset({
      ...base,
      policies: [P({ name: 'p', selector: {}, ingress: [{ from: [{ selector: { app: 'nobody' } }] }] })],
    });
    expect(here.script).not.toContain('_peers');
    expect(here.script).toContain('    ip daddr @n123456_p0_sel drop');
  });

  it('compiles egress rules against the sender', () => {
    const out = compileRuleset({
      ...base,
      policies: [
        P({
          name: 'web-egress',
          policyTypes: ['egress'],
          selector: { app: 'web' },
          egress: [
            { to: [{ selector: { app: 'db' } }], ports: [{ protocol: 'tcp', port: 5432 }] },
            { ports: [{ protocol: 'icmp' }] },
          ],
        }),
      ],
    });
    expect(out.script).toContain(
      '    ip saddr @n123456_p0_sel ip daddr @n123456_peers0 meta l4proto tcp th dport 5432 return',
    );
    expect(out.script).toContain('    ip saddr @n123456_p0_sel meta l4proto icmp return');
    expect(out.script).toContain(
      '    ip saddr @n123456_p0_sel limit rate 10/second burst 20 packets log group 6783 prefix "wtp E e 123456 web-egress" drop',
    );
    // policyTypes: egress only, so no ingress isolation.
    expect(out.script).not.toContain('prefix "wtp E i');
  });
});

describe('policies in the store', () => {
  it('applies all or nothing, versions changes, bumps the generation, removes', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-policy-'));
    const store = await FileStore.open({ file: path.join(dir, 'store.json'), log: silentLogger });
    try {
      const doc = { name: 'a', selector: {} };
      const first = await applyPolicies(store, [{ name: 'a', network: 'weavets', document: doc }]);
      expect(first).toEqual({ generation: 1, policies: [{ name: 'a', version: 1, changed: true }] });
      const same = await applyPolicies(store, [
        { name: 'a', network: 'weavets', document: { selector: {}, name: 'a' } },
      ]);
      expect(same).toEqual({ generation: 1, policies: [{ name: 'a', version: 1, changed: false }] });
      const two = await applyPolicies(store, [
        { name: 'a', network: 'weavets', document: { ...doc, mode: 'audit' } },
        { name: 'b', network: 'weavets', document: { name: 'b', selector: {} } },
      ]);
      expect(two.generation).toBe(2);
      expect(two.policies.map((p) => p.version)).toEqual([2, 1]);
      expect(JSON.parse((await store.get(GENERATION_KEY))!.value)).toEqual({ generation: 2 });
      const gone = await removePolicy(store, 'a');
      expect(gone.generation).toBe(3);
      expect(await store.get(ruleKey('a'))).toBeUndefined();
      await expect(removePolicy(store, 'a')).rejects.toMatchObject({ code: 'EWEAVETS_NOT_FOUND' });
      await applyPolicies(store, [{ name: 'c', network: 'weavets', document: { name: 'c', selector: {} } }]);
      // Several at once, all or none: a missing name removes nothing.
      await expect(removePolicies(store, ['b', 'zz'])).rejects.toMatchObject({ code: 'EWEAVETS_NOT_FOUND' });
      expect(await store.get(ruleKey('b'))).toBeDefined();
      const both = await removePolicies(store, ['b', 'c']);
      expect(both.removed.map((p) => p.name)).toEqual(['b', 'c']);
      expect((await store.list('policy/rules/')).entries).toEqual([]);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
