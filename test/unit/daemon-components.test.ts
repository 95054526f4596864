import { describe, expect, it } from 'vitest';
import { ComponentRunner, component, type Startable, type StopMode } from '../../src/daemon/component';
import { createLogger, type LogSink } from '../../src/log';

function recorder(): { log: string[]; sink: LogSink } {
  const log: string[] = [];
  return { log, sink: { write: (line: string) => (log.push(line), true) } };
}

function part(name: string, events: string[], opts: { failStart?: boolean; failStop?: boolean } = {}): Startable {
  return {
    name,
    start() {
      if (opts.failStart) return Promise.reject(new Error(`${name} cannot start`));
      events.push(`start ${name}`);
      return Promise.resolve();
    },
    stop(mode: StopMode) {
      if (opts.failStop) return Promise.reject(new Error(`${name} cannot stop`));
      events.push(`stop ${name} ${mode}`);
      return Promise.resolve();
    },
  };
}

describe('ComponentRunner', () => {
  it('starts in the order given and stops in reverse, with the mode', async () => {
    const events: string[] = [];
    const runner = new ComponentRunner(createLogger('error', recorder().sink));
    for (const n of ['store', 'router', 'api']) await runner.start(part(n, events));
    await runner.stopAll('reset');
    expect(events).toEqual([
      'start store',
      'start router',
      'start api',
      'stop api reset',
      'stop router reset',
      'stop store reset',
    ]);
  });

  it('stops what started, in reverse, when a start fails, and throws the failure on', async () => {
    const events: string[] = [];
    const runner = new ComponentRunner(createLogger('error', recorder().sink));
    await runner.start(part('a', events));
    await runner.start(part('b', events));
    await expect(runner.start(part('c', events, { failStart: true }))).rejects.toThrow('c cannot start');
    expect(events).toEqual(['start a', 'start b', 'stop b stop', 'stop a stop']);
    // Nothing starts on a runner that has stopped.
    await expect(runner.start(part('d', events))).rejects.toThrow(/stopping/);
    expect(events).not.toContain('start d');
  });

  it('goes on stopping the rest when a stop throws, and logs which one failed', async () => {
    const events: string[] = [];
    const { log, sink } = recorder();
    const runner = new ComponentRunner(createLogger('warn', sink));
    await runner.start(part('a', events));
    await runner.start(part('b', events, { failStop: true }));
    await runner.start(part('c', events));
    await expect(runner.stopAll('stop')).resolves.toBeUndefined();
    expect(events).toEqual(['start a', 'start b', 'start c', 'stop c stop', 'stop a stop']);
    expect(log.join('')).toMatch(/did not stop cleanly.*b cannot stop|b cannot stop.*did not stop cleanly/);
  });

  it('stops once: a second stopAll waits for the first and stops nothing twice', async () => {
    const events: string[] = [];
    const runner = new ComponentRunner(createLogger('error', recorder().sink));
    await runner.start(part('a', events));
    await Promise.all([runner.stopAll('stop'), runner.stopAll('reset')]);
    expect(events).toEqual(['start a', 'stop a stop']);
  });

  it('open() hands the value a component made to the ones built after it', async () => {
    const runner = new ComponentRunner(createLogger('error', recorder().sink));
    const closed: string[] = [];
    const store = await runner.open(
      component(
        'store',
        () => ({ kind: 'file' }),
        (s, mode) => void closed.push(`${s.kind} ${mode}`),
      ),
    );
    expect(store.kind).toBe('file');
    await runner.stopAll('stop');
    expect(closed).toEqual(['file stop']);
  });
});
