import { describe, it, expect } from 'vitest';
import type { EndpointStatus } from '../../src/api/types';
import { type Host, type Lab, type Namespace } from './harness';
import { useLab } from './lab-hooks';

describe('repro issue 12', () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;
  let a: Namespace;
  let b: Namespace;
  let d: Namespace;
  useLab(async (l) => {
    lab = l;
    h1 = await lab.addHost('host1');
    h2 = await lab.addHost('host2');
    a = await lab.addContainer(h1, 'a');
    b = await lab.addContainer(h2, 'b');
    d = await lab.addContainer(h1, 'd');
    await lab.launch(h1, [], ['--datapath', 'sleeve']);
    await lab.launch(h2, [h1.ip], ['--datapath', 'sleeve']);
  });
  it('repro', async () => {
    const ipd = await lab.attach(h1, d);
    const ipa = await lab.attach(h1, a, ['--network', 'red']);
    const ipb = await lab.attach(h2, b, ['--network', 'red']);
    console.log({ ipa, ipb, ipd });
    console.log(await lab.weavetsOk(h1, ['status']));
    console.log((await lab.execOk(h1, ['ip', '-o', 'addr'])).stdout);
    console.log((await lab.exec(h1, ["cat", `/etc/netns/${a.netnsName}/resolv.conf`])).stdout);
    console.log((await lab.exec(h1, ['cat', `/etc/netns/${a.netnsName ?? ''}/resolv.conf`])).stdout);
    const p = await lab.ping(a, ipb.split('/')[0]!, { count: 3 });
    console.log('a->b', p.received, p.output);
    const eps = await lab.weavetsJson<EndpointStatus[]>(h1, ['ps']);
    console.log(eps);
    expect(true).toBe(true);
  }, 60_000);
});
