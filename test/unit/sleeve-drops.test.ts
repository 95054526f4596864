/**
 * The sleeve's drop reasons are a closed list, and docs/PROTOCOL.md ("Drop reasons")
 * names exactly that list; errno labels map onto it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DROP_REASONS, DropCounter, bridgeErrorReason, sendErrorReason } from '../../src/datapath/sleeve/drops';

/** Every `reason` in the first column of the table under "### Drop reasons". */
function documentedReasons(): string[] {
  const doc = fs.readFileSync(path.join(__dirname, '../../docs/PROTOCOL.md'), 'utf8');
  const start = doc.indexOf('### Drop reasons');
  expect(start).toBeGreaterThan(0);
  const rest = doc.slice(start + 1);
  const section = rest.slice(0, rest.search(/\n#{1,3} /));
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  return rows.flatMap((row) => [...row.split('|')[1]!.matchAll(/`([a-zA-Z_]+)`/g)].map((m) => m[1]!));
}

describe('sleeve drop reasons', () => {
  it('docs/PROTOCOL.md names exactly the reasons the code counts', () => {
    const documented = documentedReasons();
    expect(new Set(documented).size).toBe(documented.length);
    expect([...documented].sort()).toEqual([...DROP_REASONS].sort());
  });

  it('labels errno failures with their code when listed, else as send_error / bridge_error', () => {
    const err = (code?: string): Error => Object.assign(new Error('x'), code === undefined ? {} : { code });
    expect(sendErrorReason(err('EMSGSIZE'))).toBe('send_EMSGSIZE');
    expect(sendErrorReason(err('EWHATEVER'))).toBe('send_error');
    expect(sendErrorReason(new RangeError('no code'))).toBe('send_error');
    expect(bridgeErrorReason(err('EIO'))).toBe('bridge_EIO');
    expect(bridgeErrorReason(err('ENOSPC'))).toBe('bridge_error');
    for (const r of [sendErrorReason(err('EPERM')), bridgeErrorReason(err('EBADFD'))])
      expect(DROP_REASONS).toContain(r);
  });

  it('counts by reason', () => {
    const c = new DropCounter();
    c.count('forged');
    c.count('forged', 2);
    expect(c.get('forged')).toBe(3);
    expect(c.get('replayed')).toBe(0);
    expect([...c.all()]).toEqual([['forged', 3]]);
  });
});
