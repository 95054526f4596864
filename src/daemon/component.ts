/**
 * The one lifecycle contract every long-lived part of the daemon shares, and the runner
 * that starts them in the order they are given and stops them in reverse. Stopping is
 * the same code whether the daemon stops, resets, or failed half-way through starting.
 */
import type { Logger } from '../log';

/** `stop` keeps the host's links, routes and state for the next run; `reset` removes them. */
export type StopMode = 'stop' | 'reset';

export interface Startable {
  /** Named in the log when it fails to stop. */
  readonly name: string;
  start(): Promise<void>;
  /**
   * Undo what start did. A failure here never ends a teardown: the runner logs it and
   * goes on with the rest, so to the daemon a stop never throws.
   */
  stop(mode: StopMode): Promise<void>;
}

/** A component from two functions; `open` makes the value later components are built on. */
export function component<T>(
  name: string,
  open: () => Promise<T> | T,
  close: (value: T, mode: StopMode) => Promise<void> | void,
): Startable & { readonly value: () => T } {
  let opened: { value: T } | undefined;
  return {
    name,
    async start() {
      opened = { value: await open() };
    },
    async stop(mode) {
      if (opened !== undefined) await close(opened.value, mode);
    },
    value() {
      if (opened === undefined) throw new Error(`component ${name} has not started`);
      return opened.value;
    },
  };
}

export class ComponentRunner {
  private readonly started: Startable[] = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  /**
   * Start `c` after every component started so far. When it fails, every started one
   * is stopped (in reverse, in `stop` mode) and the error is thrown on.
   */
  async start(c: Startable): Promise<void> {
    if (this.stopping !== undefined) throw new Error(`cannot start ${c.name}: the daemon is stopping`);
    try {
      await c.start();
    } catch (err) {
      this.log.debug('a component failed to start; stopping the ones that did', { component: c.name });
      await this.stopAll('stop');
      throw err;
    }
    this.started.push(c);
  }

  /** Start and return the component's value: `const ipam = await runner.open(component(...))`. */
  async open<T>(c: Startable & { readonly value: () => T }): Promise<T> {
    await this.start(c);
    return c.value();
  }

  /** Stop every started component, last started first; once (a second call waits for the first). */
  stopAll(mode: StopMode): Promise<void> {
    this.stopping ??= this.stopInReverse(mode);
    return this.stopping;
  }

  private async stopInReverse(mode: StopMode): Promise<void> {
    for (let c = this.started.pop(); c !== undefined; c = this.started.pop()) {
      try {
        await c.stop(mode);
      } catch (err) {
        this.log.warn('a component did not stop cleanly; going on with the rest', {
          component: c.name,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }
}
