import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DockerPlugin, type DockerPluginDeps } from '../../src/docker/plugin';
import { errorAnswer, parseBody, parsePortBindings, PluginError } from '../../src/docker/protocol';
import { contains, parseCidr, parseIpv4, formatIpv4 } from '../../src/net/ipv4';
import type { Allocation, AllocationRequest, AddressAllocator } from '../../src/ipam/types';
import type { EndpointStatus } from '../../src/endpoint/types';
import type { PortBinding } from '../../src/docker/protocol';
import { silentLogger } from '../../src/log';
import { FileStore } from '../../src/store/file';
import { NetworkCatalog } from '../../src/endpoint/network-catalog';
import { addrKey, blockKey } from '../../src/ipam/blocks';

/** One allocator: the default network from 10.32.0.1, other networks from their catalog subnet. */
class FakeAllocator implements AddressAllocator {
  readonly self = 'me';
  next = parseCidr('10.32.0.0/12').base + 1;
  nextIn = new Map<string, number>();
  held = new Map<string, Allocation>();
  async allocate(req: AllocationRequest): Promise<Allocation> {
    const net = catalogNets.find((n) => n.name === req.network && n.name !== 'weavets');
    const subnet = net ? parseCidr(net.subnet) : parseCidr('10.32.0.0/12');
    if (net && req.ip !== undefined && !contains(subnet, req.ip))
      throw new Error(`${formatIpv4(req.ip)} is not in network ${net.name}'s subnet ${net.subnet}`);
    let ip = req.ip;
    if (ip === undefined && net) {
      ip = this.nextIn.get(net.name) ?? subnet.base + 1;
      this.nextIn.set(net.name, ip + 1);
    }
    ip ??= this.next++;
    for (const a of this.held.values()) if (a.ip === ip) throw new Error(`${formatIpv4(ip)} is already in use`);
    const a = {
      id: req.id,
      ifname: req.ifname,
      network: req.network,
      ip,
      address: `${formatIpv4(ip)}/${subnet.prefix}`,
    };
    this.held.set(`${req.id}/${req.ifname}`, a);
    return a;
  }
  claim(req: AllocationRequest & { ip: number }): Promise<Allocation> {
    return this.allocate(req);
  }
  async release(id: string, ifname: string): Promise<Allocation | undefined> {
    const a = this.held.get(`${id}/${ifname}`);
    this.held.delete(`${id}/${ifname}`);
    return a;
  }
}

let dir: string;
let alloc: FakeAllocator;
let eps: Map<string, EndpointStatus>;
let addrs: string[];
let published: PortBinding[];
let names: Record<string, string>;
/** The fake catalog: networks by name and subnet. */
let catalogNets: { name: string; subnet: string }[];
/** What the catalog refuses a new subnet for (most tests: nothing; one uses a real catalog). */
let refusal: (subnet: string) => Promise<string | undefined>;
/** What each bridges.ensure asked for, "segment subnet=... sources=...". */
let ensured: string[];
let released: string[];

function deps(): DockerPluginDeps {
  return {
    range: parseCidr('10.32.0.0/12'),
    allocator: alloc,
    endpoints: {
      plug: async (r) => {
        const ep: EndpointStatus = {
          id: r.id,
          network: r.network,
          ifname: 'vwc1',
          address: r.address,
          mac: r.mac ?? '02:00:00:00:00:01',
          netns: '',
          hostVeth: 'vwt1',
          externalAddress: true,
        };
        eps.set(r.id, ep);
        return ep;
      },
      detach: async (id) => {
        if (!eps.delete(id)) throw new Error('no such endpoint');
      },
      list: () => [...eps.values()],
    },
    bridges: {
      ensure: async (s, wants) => {
        ensured.push(`${s} subnet=${wants?.subnet ?? '-'} sources=${wants?.sources ?? '-'}`);
        let net = catalogNets.find((n) => n.name === s);
        if (net && wants?.subnet !== undefined && net.subnet !== wants.subnet)
          throw new Error(`network ${s} exists with subnet ${net.subnet}, not ${wants.subnet}`);
        if (!net) {
          net = { name: s, subnet: wants?.subnet ?? `10.40.${catalogNets.length}.0/24` };
          catalogNets.push(net);
        }
        return { bridge: `br-${s}`, subnet: net.subnet };
      },
      release: async (s) => {
        released.push(s);
        catalogNets = catalogNets.filter((n) => n.name !== s);
      },
      addAddress: async (b, c) => void addrs.push(`${b} ${c}`),
      delAddress: async (b, c) => void (addrs = addrs.filter((x) => x !== `${b} ${c}`)),
      routeTo: async () => undefined,
      unroute: async () => undefined,
    },
    networkName: async (id) => names[id],
    catalog: () => catalogNets,
    subnetRefusal: (subnet) => refusal(subnet),
    ports: {
      publish: async (_ip, b) => {
        published.push(...b);
        return b;
      },
      unpublish: async (b) => void (published = published.filter((p) => !b.includes(p))),
      clear: async () => undefined,
    },
    stateDir: dir,
    log: silentLogger,
    bindDelaysMs: [],
  };
}

async function call(
  p: DockerPlugin,
  method: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const a = await p.handle(method, body === undefined ? '' : JSON.stringify(body));
  return a as { status: number; body: Record<string, unknown> };
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-docker-'));
  alloc = new FakeAllocator();
  eps = new Map();
  addrs = [];
  published = [];
  names = { n1: 'appnet' };
  catalogNets = [{ name: 'weavets', subnet: '10.32.0.0/12' }];
  refusal = async () => undefined;
  ensured = [];
  released = [];
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('Docker plugin protocol', () => {
  it('activates as a network and IPAM driver with empty bodies and no content type', async () => {
    const p = new DockerPlugin(deps());
    expect(await call(p, '/Plugin.Activate')).toEqual({
      status: 200,
      body: { Implements: ['NetworkDriver', 'IpamDriver'] },
    });
    expect((await call(p, '/NetworkDriver.GetCapabilities')).body['Scope']).toBe('local');
    expect((await call(p, '/IpamDriver.GetDefaultAddressSpaces')).body).toEqual({
      LocalDefaultAddressSpace: 'weavets',
      GlobalDefaultAddressSpace: 'weavets',
    });
    expect((await call(p, '/IpamDriver.GetCapabilities')).status).toBe(200);
    expect((await call(p, '/NetworkDriver.DiscoverNew', { DiscoveryType: 1, DiscoveryData: {} })).body).toEqual({});
    expect((await call(p, '/NetworkDriver.AllocateNetwork', { NetworkID: 'x' })).body).toEqual({ Options: {} });
  });

  it('answers unknown methods 404 and errors with both Err and Error', async () => {
    const p = new DockerPlugin(deps());
    const nope = await call(p, '/NetworkDriver.Nope', {});
    expect(nope.status).toBe(404);
    expect(nope.body['Err']).toMatch(/no such plugin method/);
    expect(nope.body['Error']).toBe(nope.body['Err']);
    const bad = await p.handle('/NetworkDriver.CreateNetwork', '[1,2]');
    expect(bad.status).toBe(400);
    const proto = await p.handle('/Object.prototype', '');
    expect(proto.status).toBe(404);
  });

  it("answers the range's pool, a pool per network otherwise, refuses bad subnets and breaks Docker's overlap loop", async () => {
    const p = new DockerPlugin(deps());
    const ok = await call(p, '/IpamDriver.RequestPool', { AddressSpace: 'weavets', Pool: '10.32.0.0/12' });
    expect(ok.body).toEqual({ PoolID: 'weavets-10.32.0.0/12', Pool: '10.32.0.0/12', Data: {} });
    catalogNets.push({ name: 'red', subnet: '10.40.7.0/24' });
    const saved = (): unknown => JSON.parse(fs.readFileSync(path.join(dir, 'docker.json'), 'utf8'));
    for (const [pool, err] of [
      ['192.168.0.0/24', /lies outside the weavets range 10\.32\.0\.0\/12/],
      ['10.40.0.0/16', /overlaps weavets network red \(10\.40\.7\.0\/24\)/],
      ['10.40.7.128/25', /overlaps weavets network red/],
      ['10.0.0.0/8', /outside the weavets range/],
      ['10.40.8.0/33', /--subnet 10\.40\.8\.0\/33/],
    ] as const) {
      const other = await call(p, '/IpamDriver.RequestPool', { AddressSpace: 'weavets', Pool: pool });
      expect(other.status, pool).toBe(400);
      expect(other.body['Error'], pool).toMatch(err);
    }
    const ipRange = await call(p, '/IpamDriver.RequestPool', { Pool: '10.40.8.0/24', SubPool: '10.40.8.0/25' });
    expect(ipRange.body['Error']).toMatch(/omit --ip-range/);
    // Nothing was kept of the refused requests.
    expect(fs.existsSync(path.join(dir, 'docker.json'))).toBe(false);
    // A --subnet that is a network's, or free: a pool of its own, that subnet.
    const same = await call(p, '/IpamDriver.RequestPool', { AddressSpace: 'weavets', Pool: '10.40.7.0/24' });
    expect(same.body).toMatchObject({ Pool: '10.40.7.0/24' });
    expect(same.body['PoolID']).toMatch(/^weavets-pool-[0-9a-f]{16}$/);
    expect((saved() as { pools: Record<string, unknown> }).pools).toEqual({
      [same.body['PoolID'] as string]: { pool: '10.40.7.0/24', subnet: '10.40.7.0/24' },
    });
    expect((await call(p, '/IpamDriver.RequestPool', { V6: true })).status).toBe(400);
    const a = await call(p, '/IpamDriver.RequestPool', { AddressSpace: 'weavets' });
    expect(a.body).toMatchObject({ Pool: '10.32.0.0/12' });
    expect(a.body['PoolID']).not.toBe(same.body['PoolID']);
    const again = await call(p, '/IpamDriver.RequestPool', { AddressSpace: 'weavets' });
    expect(again.body['Error']).toMatch(/add --subnet 10\.32\.0\.0\/12/);
    expect((await call(p, '/IpamDriver.ReleasePool', { PoolID: a.body['PoolID'] })).status).toBe(200);
    expect(Object.keys((saved() as { pools: Record<string, unknown> }).pools)).toEqual([same.body['PoolID']]);
  });

  it('refuses at RequestPool what the catalog would refuse at the binding: a subnet smaller than a block, or where the default network has addresses', async () => {
    const store = await FileStore.open({ file: path.join(dir, 'store.json'), log: silentLogger });
    const catalog = await NetworkCatalog.open({
      store,
      range: parseCidr('10.32.0.0/12'),
      blockPrefix: 26,
      log: silentLogger,
    });
    try {
      refusal = (subnet) => catalog.subnetRefusal(subnet);
      await store.put(
        blockKey(parseIpv4('10.32.0.64')),
        JSON.stringify({ owner: 'h2', nickname: 'host2', network: 'weavets' }),
      );
      await store.put(
        addrKey(parseIpv4('10.33.1.9')),
        JSON.stringify({ id: 'c9', ifname: 'eth0', host: 'h3', network: 'weavets' }),
      );
      await catalog.create({ name: 'red', subnet: '10.40.7.0/24' });
      const p = new DockerPlugin(deps());
      for (const [pool, err] of [
        ['10.40.9.0/27', 'is smaller than one address block (/26); use /26 or larger'],
        [
          '10.32.0.0/24',
          'overlaps addresses of network weavets in use: block 10.32.0.64/26 of host host2; choose a subnet outside them',
        ],
        ['10.33.0.0/23', 'overlaps addresses of network weavets in use: 10.33.1.9/32 of c9 on host h3'],
      ] as const) {
        const answer = await call(p, '/IpamDriver.RequestPool', { AddressSpace: 'weavets', Pool: pool });
        expect(answer.status, pool).toBe(400);
        expect(answer.body['Err'], pool).toContain(`--subnet ${pool}: subnet ${pool} ${err}`);
      }
      expect(fs.existsSync(path.join(dir, 'docker.json'))).toBe(false);
      // Exactly an existing network's subnet joins it; a free subnet is answered.
      for (const pool of ['10.40.7.0/24', '10.32.1.0/24']) {
        const answer = await call(p, '/IpamDriver.RequestPool', { AddressSpace: 'weavets', Pool: pool });
        expect(answer.body, pool).toMatchObject({ Pool: pool });
      }
    } finally {
      await catalog.close();
      await store.close();
    }
  });

  it('addresses a network of its own pool from its catalog subnet, on both hosts of the segment, and keeps it across a restart', async () => {
    const gatewayOpt = { RequestAddressType: 'com.docker.network.gateway' };
    const create = async (p: DockerPlugin, networkId: string, subnet?: string): Promise<string> => {
      const pool = await call(p, '/IpamDriver.RequestPool', {
        AddressSpace: 'weavets',
        ...(subnet ? { Pool: subnet } : {}),
      });
      const poolId = pool.body['PoolID'] as string;
      const gw = await call(p, '/IpamDriver.RequestAddress', { PoolID: poolId, Options: gatewayOpt });
      expect(gw.status).toBe(200);
      const r = await call(p, '/NetworkDriver.CreateNetwork', {
        NetworkID: networkId,
        Options: { 'com.docker.network.generic': {} },
        IPv4Data: [{ AddressSpace: 'weavets', Pool: pool.body['Pool'], Gateway: gw.body['Address'] }],
      });
      expect(r.status).toBe(200);
      return poolId;
    };
    names = { n1: 'red', n2: 'blue', h2n1: 'red' };
    const p = new DockerPlugin(deps());
    const redPool = await create(p, 'n1');
    const bluePool = await create(p, 'n2');
    // No catalog network yet: Docker has not named the networks.
    expect(catalogNets.map((n) => n.name)).toEqual(['weavets']);
    const c1 = await call(p, '/IpamDriver.RequestAddress', { PoolID: redPool });
    const c2 = await call(p, '/IpamDriver.RequestAddress', { PoolID: bluePool });
    expect(catalogNets).toEqual([
      { name: 'weavets', subnet: '10.32.0.0/12' },
      { name: 'red', subnet: '10.40.1.0/24' },
      { name: 'blue', subnet: '10.40.2.0/24' },
    ]);
    // Each host's gateway is the first address of the subnet taken here, then the container's.
    expect(c1.body['Address']).toBe('10.40.1.2/24');
    expect(c2.body['Address']).toBe('10.40.2.2/24');
    expect(addrs).toEqual(['br-red 10.40.1.1/24', 'br-blue 10.40.2.1/24']);
    expect(ensured[0]).toBe('red subnet=- sources=-');
    await call(p, '/NetworkDriver.CreateEndpoint', {
      NetworkID: 'n1',
      EndpointID: 'e1',
      Interface: { Address: c1.body['Address'] },
    });
    expect(eps.get('docker:e1')?.network).toBe('red');
    const j = await call(p, '/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: 'e1', SandboxKey: '/x' });
    expect(j.body).toMatchObject({ Gateway: '10.40.1.1', DisableGatewayService: true });
    // --ip outside the subnet is refused, inside it is given.
    const out = await call(p, '/IpamDriver.RequestAddress', { PoolID: redPool, Address: '10.32.0.77' });
    expect(out.body['Err']).toMatch(/not in network red's subnet 10\.40\.1\.0\/24/);
    const pinned = await call(p, '/IpamDriver.RequestAddress', { PoolID: redPool, Address: '10.40.1.50' });
    expect(pinned.body['Address']).toBe('10.40.1.50/24');
    // The allocator handles of the gateways are claimed, so a reconciler keeps them.
    expect(p.addressHandles().filter((h) => h.ifname === 'gw')).toHaveLength(2);
    // Another host's Docker network of the same name is the same catalog network.
    const h2 = new DockerPlugin({ ...deps(), stateDir: fs.mkdtempSync(path.join(dir, 'h2-')) });
    const h2Pool = await create(h2, 'h2n1');
    const c3 = await call(h2, '/IpamDriver.RequestAddress', { PoolID: h2Pool });
    expect(c3.body['Address']).toBe('10.40.1.4/24');
    // A restart keeps the binding.
    const p2 = new DockerPlugin(deps());
    await p2.restore();
    expect((await call(p2, '/IpamDriver.RequestAddress', { PoolID: redPool })).body['Address']).toMatch(
      /^10\.40\.1\.\d+\/24$/,
    );
    expect(p2.networks().find((n) => n.id === 'n1')).toEqual({ id: 'n1', segment: 'red', gateway: '10.40.1.1/24' });
    // Delete: the gateway goes, and the catalog network is offered for release.
    await call(p2, '/NetworkDriver.DeleteEndpoint', { NetworkID: 'n1', EndpointID: 'e1' });
    expect((await call(p2, '/NetworkDriver.DeleteNetwork', { NetworkID: 'n1' })).status).toBe(200);
    expect(addrs).not.toContain('br-red 10.40.1.1/24');
    expect(released).toEqual(['red']);
    expect([...alloc.held.values()].some((a) => a.address === '10.40.1.1/24')).toBe(false);
  });

  it('binds a new network to its catalog network soon after CreateNetwork, once Docker names it', async () => {
    names = {};
    const p = new DockerPlugin({ ...deps(), bindDelaysMs: [0, 0] });
    const pool = await call(p, '/IpamDriver.RequestPool', {});
    const gw = await call(p, '/IpamDriver.RequestAddress', {
      PoolID: pool.body['PoolID'],
      Options: { RequestAddressType: 'com.docker.network.gateway' },
    });
    await call(p, '/NetworkDriver.CreateNetwork', {
      NetworkID: 'n1',
      IPv4Data: [{ Pool: pool.body['Pool'], Gateway: gw.body['Address'] }],
    });
    // Docker names it a moment after CreateNetwork: the bind follows, with no container.
    names = { n1: 'red' };
    await vi.waitFor(() => expect(catalogNets.map((n) => n.name)).toContain('red'));
    await vi.waitFor(() => expect(addrs).toEqual(['br-red 10.40.1.1/24']));
    p.close();
  });

  it('binds a --subnet to the catalog network that has it, and refuses a segment with another subnet', async () => {
    catalogNets.push({ name: 'red', subnet: '10.40.7.0/24' });
    names = { n1: 'whatever', n2: 'blue' };
    const p = new DockerPlugin(deps());
    const pool = await call(p, '/IpamDriver.RequestPool', { Pool: '10.40.7.0/24' });
    const poolId = pool.body['PoolID'] as string;
    const gw = await call(p, '/IpamDriver.RequestAddress', {
      PoolID: poolId,
      Options: { RequestAddressType: 'com.docker.network.gateway' },
    });
    // Docker records a gateway, but no bridge gets it.
    expect(gw.body['Address']).toMatch(/^10\.32\.0\.\d+\/24$/);
    const conflicting = await call(p, '/NetworkDriver.CreateNetwork', {
      NetworkID: 'n1',
      Options: { 'com.docker.network.generic': { 'weavets.segment': 'green' } },
      IPv4Data: [{ Pool: '10.40.7.0/24', Gateway: gw.body['Address'] }],
    });
    expect(conflicting.body['Err']).toMatch(/--subnet 10\.40\.7\.0\/24 is weavets network red's/);
    expect(p.networks()).toEqual([]);
    await call(p, '/NetworkDriver.CreateNetwork', {
      NetworkID: 'n1',
      IPv4Data: [{ Pool: '10.40.7.0/24', Gateway: gw.body['Address'] }],
    });
    const c = await call(p, '/IpamDriver.RequestAddress', { PoolID: poolId });
    expect(c.body['Address']).toBe('10.40.7.2/24');
    expect(ensured).toEqual(['red subnet=10.40.7.0/24 sources=-']);
    // A --subnet for a name whose catalog network has another subnet: the first container is refused.
    catalogNets.push({ name: 'blue', subnet: '10.40.9.0/24' });
    const bp = await call(p, '/IpamDriver.RequestPool', { Pool: '10.40.10.0/24' });
    const bgw = await call(p, '/IpamDriver.RequestAddress', {
      PoolID: bp.body['PoolID'],
      Options: { RequestAddressType: 'com.docker.network.gateway' },
    });
    await call(p, '/NetworkDriver.CreateNetwork', {
      NetworkID: 'n2',
      IPv4Data: [{ Pool: '10.40.10.0/24', Gateway: bgw.body['Address'] }],
    });
    const held = alloc.held.size;
    const refused = await call(p, '/IpamDriver.RequestAddress', { PoolID: bp.body['PoolID'] });
    expect(refused.body['Err']).toMatch(/exists with subnet 10\.40\.9\.0\/24, not 10\.40\.10\.0\/24/);
    expect(alloc.held.size).toBe(held);
  });

  it("takes Docker's default IPAM outside the range (its pool accepted on the bridge), and refuses it inside", async () => {
    const p = new DockerPlugin(deps());
    const inside = await call(p, '/NetworkDriver.CreateNetwork', {
      NetworkID: 'n1',
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.33.0.0/16', Gateway: '10.33.0.1/16' }],
    });
    expect(inside.body['Err']).toMatch(/pool 10\.33\.0\.0\/16 overlaps the weavets range 10\.32\.0\.0\/12/);
    expect(p.networks()).toEqual([]);
    const ok = await call(p, '/NetworkDriver.CreateNetwork', {
      NetworkID: 'n1',
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '172.18.0.0/16', Gateway: '172.18.0.1/16' }],
    });
    expect(ok.status).toBe(200);
    const ce = await call(p, '/NetworkDriver.CreateEndpoint', {
      NetworkID: 'n1',
      EndpointID: 'e1',
      Interface: { Address: '172.18.0.2/16' },
    });
    expect(ce.status).toBe(200);
    expect(ensured).toEqual(['appnet subnet=- sources=172.18.0.0/16']);
    expect(addrs).toEqual(['br-appnet 172.18.0.1/16']);
    expect(p.networks()).toEqual([{ id: 'n1', segment: 'appnet', gateway: '172.18.0.1/16', sources: '172.18.0.0/16' }]);
    expect(alloc.held.size).toBe(0);
  });

  it('allocates, releases by address alone, and survives a restart', async () => {
    const p = new DockerPlugin(deps());
    const pool = 'weavets-10.32.0.0/12';
    const gw = await call(p, '/IpamDriver.RequestAddress', {
      PoolID: pool,
      Options: { RequestAddressType: 'com.docker.network.gateway' },
    });
    expect(gw.body['Address']).toBe('10.32.0.1/12');
    const c = await call(p, '/IpamDriver.RequestAddress', { PoolID: pool, Address: '10.32.0.9' });
    expect(c.body['Address']).toBe('10.32.0.9/12');
    expect(alloc.held.size).toBe(2);
    const p2 = new DockerPlugin(deps());
    await p2.restore();
    expect((await call(p2, '/IpamDriver.ReleaseAddress', { PoolID: pool, Address: '10.32.0.9' })).status).toBe(200);
    expect(alloc.held.size).toBe(1);
    // Repeated release: nothing held, still fine.
    expect((await call(p2, '/IpamDriver.ReleaseAddress', { PoolID: pool, Address: '10.32.0.9' })).status).toBe(200);
    expect((await call(p2, '/IpamDriver.RequestAddress', { PoolID: 'nope' })).status).toBe(400);
  });

  it('creates a network, plugs, joins, publishes, leaves and deletes an endpoint', async () => {
    const p = new DockerPlugin(deps());
    const bad = await call(p, '/NetworkDriver.CreateNetwork', {
      NetworkID: 'n2',
      Options: { 'com.docker.network.generic': { mtu: '9000' } },
    });
    expect(bad.body['Err']).toMatch(/unknown option -o mtu/);
    const v4 = [{ AddressSpace: 'weavets', Pool: '10.32.0.0/12', Gateway: '10.32.0.1/12' }];
    expect(
      (
        await call(p, '/NetworkDriver.CreateNetwork', {
          NetworkID: 'n1',
          Options: { 'com.docker.network.generic': {} },
          IPv4Data: v4,
          IPv6Data: [],
        })
      ).status,
    ).toBe(200);
    const ce = await call(p, '/NetworkDriver.CreateEndpoint', {
      NetworkID: 'n1',
      EndpointID: 'e1',
      Interface: { Address: '10.32.0.5/12' },
    });
    expect(ce.body).toEqual({ Interface: { MacAddress: '02:00:00:00:00:01' } });
    expect(eps.get('docker:e1')?.network).toBe('appnet');
    expect(addrs).toEqual(['br-appnet 10.32.0.1/12']);
    const j = await call(p, '/NetworkDriver.Join', {
      NetworkID: 'n1',
      EndpointID: 'e1',
      SandboxKey: '/var/run/docker/netns/x',
    });
    expect(j.body).toMatchObject({
      InterfaceName: { SrcName: 'vwc1', DstPrefix: 'eth' },
      Gateway: '10.32.0.1',
      DisableGatewayService: true,
    });
    const pe = await call(p, '/NetworkDriver.ProgramExternalConnectivity', {
      NetworkID: 'n1',
      EndpointID: 'e1',
      Options: {
        'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }],
      },
    });
    expect(pe.status).toBe(200);
    expect(published).toEqual([{ proto: 'tcp', port: 80, hostIp: '', hostPort: 8080, hostPortEnd: 8080 }]);
    expect(
      (
        (await call(p, '/NetworkDriver.EndpointOperInfo', { NetworkID: 'n1', EndpointID: 'e1' })).body[
          'Value'
        ] as Record<string, string>
      )['weavets.ports'],
    ).toBe('8080->80/tcp');
    expect(
      (await call(p, '/NetworkDriver.RevokeExternalConnectivity', { NetworkID: 'n1', EndpointID: 'e1' })).status,
    ).toBe(200);
    expect(published).toEqual([]);
    expect((await call(p, '/NetworkDriver.Leave', { NetworkID: 'n1', EndpointID: 'e1' })).status).toBe(200);
    expect((await call(p, '/NetworkDriver.DeleteEndpoint', { NetworkID: 'n1', EndpointID: 'e1' })).status).toBe(200);
    expect(eps.size).toBe(0);
    expect((await call(p, '/NetworkDriver.DeleteNetwork', { NetworkID: 'n1' })).status).toBe(200);
    expect(addrs).toEqual([]);
  });

  it('treats ids like __proto__ and constructor as plain keys, also across a restart', async () => {
    const p = new DockerPlugin(deps());
    // Never created: an id that is an Object.prototype member is still unknown.
    for (const id of ['constructor', 'toString', 'hasOwnProperty']) {
      const j = await call(p, '/NetworkDriver.Join', { NetworkID: 'n1', EndpointID: id });
      expect(j.status, id).toBe(500);
      expect(j.body['Err']).toMatch(/no endpoint/);
    }
    const segment = { 'com.docker.network.generic': { 'weavets.segment': 'appnet' } };
    expect((await call(p, '/NetworkDriver.CreateNetwork', { NetworkID: '__proto__', Options: segment })).status).toBe(
      200,
    );
    const ce = await call(p, '/NetworkDriver.CreateEndpoint', {
      NetworkID: '__proto__',
      EndpointID: '__proto__',
      Interface: { Address: '10.32.0.5/12' },
    });
    expect(ce.status).toBe(200);
    expect(eps.get('docker:__proto__')?.network).toBe('appnet');
    const saved = JSON.parse(fs.readFileSync(path.join(dir, 'docker.json'), 'utf8')) as Record<
      string,
      Record<string, unknown>
    >;
    expect(Object.keys(saved['endpoints']!)).toEqual(['__proto__']);
    expect(Object.keys(saved['networks']!)).toEqual(['__proto__']);
    // A restarted daemon still knows the endpoint and can delete it for good.
    const p2 = new DockerPlugin(deps());
    await p2.restore();
    expect(p2.networks().map((n) => n.id)).toEqual(['__proto__']);
    expect(
      (await call(p2, '/NetworkDriver.Join', { NetworkID: '__proto__', EndpointID: '__proto__', SandboxKey: '/x' }))
        .status,
    ).toBe(200);
    expect(
      (await call(p2, '/NetworkDriver.DeleteEndpoint', { NetworkID: '__proto__', EndpointID: '__proto__' })).status,
    ).toBe(200);
    expect(eps.size).toBe(0);
    expect((await call(p2, '/NetworkDriver.Join', { NetworkID: '__proto__', EndpointID: '__proto__' })).status).toBe(
      500,
    );
    expect((await call(p2, '/NetworkDriver.DeleteNetwork', { NetworkID: '__proto__' })).status).toBe(200);
    expect(p2.networks()).toEqual([]);
  });

  it('uses -o weavets.segment, and says so when Docker cannot name a network', async () => {
    const p = new DockerPlugin(deps());
    await call(p, '/NetworkDriver.CreateNetwork', {
      NetworkID: 'n9',
      Options: { 'com.docker.network.generic': { 'weavets.segment': 'blue' } },
    });
    await call(p, '/NetworkDriver.CreateEndpoint', {
      NetworkID: 'n9',
      EndpointID: 'e9',
      Interface: { Address: '10.32.0.7/12', MacAddress: '02:00:00:00:00:09' },
    });
    expect(eps.get('docker:e9')?.network).toBe('blue');
    await call(p, '/NetworkDriver.CreateNetwork', { NetworkID: 'n8' });
    const r = await call(p, '/NetworkDriver.CreateEndpoint', {
      NetworkID: 'n8',
      EndpointID: 'e8',
      Interface: { Address: '10.32.0.8/12' },
    });
    expect(r.status).toBe(500);
    expect(r.body['Err']).toMatch(/cannot learn the name of Docker network/);
  });
});

describe('protocol helpers', () => {
  it('parses bodies and port bindings, and refuses junk', () => {
    expect(parseBody('')).toEqual({});
    expect(parseBody('null')).toEqual({});
    expect(() => parseBody('{')).toThrow(PluginError);
    expect(() => parseBody('"s"')).toThrow(/JSON object/);
    expect(parsePortBindings({ 'com.docker.network.portmap': [{ Proto: 17, Port: 53, HostPort: 0 }] })).toEqual([
      { proto: 'udp', port: 53, hostIp: '', hostPort: 0, hostPortEnd: 0 },
    ]);
    expect(() => parsePortBindings({ 'com.docker.network.portmap': [{ Proto: 1, Port: 53 }] })).toThrow(/Proto/);
    expect(() => parsePortBindings({ 'com.docker.network.portmap': [{ Proto: 6, Port: 70000 }] })).toThrow(
      /port number/,
    );
    expect(errorAnswer(new PluginError(418, 'x'))).toEqual({ status: 418, body: { Err: 'x', Error: 'x' } });
  });

  it('never throws on random input', async () => {
    const p = new DockerPlugin(deps());
    const methods = [
      '/NetworkDriver.Join',
      '/NetworkDriver.CreateEndpoint',
      '/IpamDriver.RequestAddress',
      '/NetworkDriver.ProgramExternalConnectivity',
      '/NetworkDriver.CreateNetwork',
    ];
    const junk = [
      '{"NetworkID":5}',
      '{"NetworkID":"a","EndpointID":{}}',
      '{"Options":[]}',
      '{"Interface":"x","NetworkID":"a","EndpointID":"b"}',
      '\u0000',
      '{"PoolID":"weavets-10.32.0.0/12","Address":"999.1.1.1"}',
    ];
    for (const m of methods) {
      for (const j of junk) {
        const a = await p.handle(m, j);
        // Some junk is a valid request (CreateNetwork with only an id); the rest is an error both proxies read.
        if (a.status !== 200) {
          expect(a.status).toBeGreaterThanOrEqual(400);
          expect((a.body as Record<string, string>)['Err']).toBeTruthy();
          expect((a.body as Record<string, string>)['Error']).toBeTruthy();
        }
      }
    }
  });
});
