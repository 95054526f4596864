import { describe, expect, it } from 'vitest';
import { SerialQueue } from '../../src/serial-queue';

describe('SerialQueue', () => {
  it('runs tasks one at a time in the order they were queued', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let running = 0;
    const task = (name: string, ms: number) => async () => {
      running++;
      expect(running).toBe(1);
      log.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, ms));
      log.push(`end ${name}`);
      running--;
      return name;
    };
    const results = await Promise.all([q.run(task('a', 20)), q.run(task('b', 1)), q.run(task('c', 5))]);
    expect(results).toEqual(['a', 'b', 'c']);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('a failed task rejects its own caller and the next task still runs', async () => {
    const q = new SerialQueue();
    const failed = q.run(() => Promise.reject(new Error('boom')));
    const thrown = q.run(() => {
      throw new Error('sync boom');
    });
    const after = q.run(() => 'still runs');
    await expect(failed).rejects.toThrow('boom');
    await expect(thrown).rejects.toThrow('sync boom');
    await expect(after).resolves.toBe('still runs');
  });

  it('idle waits for queued work and does not reject after a failure', async () => {
    const q = new SerialQueue();
    let done = false;
    void q.run(async () => {
      await new Promise((r) => setTimeout(r, 10));
      done = true;
    });
    q.run(() => Promise.reject(new Error('ignored'))).catch(() => undefined);
    await q.idle();
    expect(done).toBe(true);
  });
});
