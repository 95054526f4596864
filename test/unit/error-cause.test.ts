import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { WeavetsError } from '../../src/errors';
import { ApiClient } from '../../src/api/client';
import { pluginErrorOf } from '../../src/docker/protocol';
import { daemonError } from '../../src/cni/plugin';
import { CNI_ERR } from '../../src/cni/spec';
import { parsePolicyDocuments } from '../../src/policy/model';

describe('errors raised because of another keep it as cause', () => {
  it('the API client: the socket error behind "not running"', async () => {
    const client = new ApiClient(path.join(os.tmpdir(), `weavets-no-such-${process.pid}.sock`), { timeoutMs: 2000 });
    const err = await client.get('/status').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WeavetsError);
    expect((err as Error).message).toMatch(/weavets is not running/);
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('the Docker and CNI surfaces: the daemon error they translate', () => {
    const daemon = new WeavetsError('EWEAVETS_RANGE_EXHAUSTED', 'no free address');
    const pe = pluginErrorOf(daemon);
    expect(pe.message).toBe('weavets: no free address');
    expect(pe.cause).toBe(daemon);
    const ce = daemonError(daemon, 'ADD');
    expect(ce.code).toBe(CNI_ERR.RANGE_EXHAUSTED);
    expect(ce.cause).toBe(daemon);
  });

  it('a policy document that is not JSON: the parser error', () => {
    let caught: unknown;
    try {
      parsePolicyDocuments('{', 'db.json');
    } catch (err) {
      caught = err;
    }
    expect((caught as WeavetsError).code).toBe('EWEAVETS_POLICY_INVALID');
    expect((caught as Error).cause).toBeInstanceOf(SyntaxError);
  });
});
