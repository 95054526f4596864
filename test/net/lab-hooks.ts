/**
 * The vitest hooks every namespace test file wants around its lab: build it (dumping the
 * hosts' logs if setup fails), dump the logs again when any test fails, tear it down.
 * Kept apart from harness.ts, which the bench and demo scripts load without vitest.
 */
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { createLab, type Lab } from './harness';

/** `teardown` runs after the lab is gone: for what setup started beside it (an etcd). */
export function useLab(
  setup: (lab: Lab) => Promise<void>,
  opts: { timeoutMs?: number; teardown?: () => Promise<void> } = {},
): void {
  let lab: Lab | undefined;
  beforeAll(async () => {
    lab = await createLab();
    try {
      await setup(lab);
    } catch (err) {
      lab.dumpLogs();
      throw err;
    }
  }, opts.timeoutMs ?? 120_000);

  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => lab?.dumpLogs());
  });

  afterAll(async () => {
    await lab?.destroy();
    await opts.teardown?.();
  });
}
