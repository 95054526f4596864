/**
 * Group commit for the stores without etcd (file.ts, mesh.ts): concurrent callers share
 * one durable write (src/state/durable-write.ts).
 */
/**
 * Runs `write` so that every `commit()` resolves once a write that started after it has
 * finished: callers arriving while a write is under way share the next one.
 */
export class GroupCommit {
  private flushing: Promise<void> | undefined;
  private waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(private readonly write: () => Promise<void>) {}

  commit(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.waiting.push({ resolve, reject }));
    if (!this.flushing) this.flushing = this.flushLoop();
    return done;
  }

  /** Resolves when no write is under way (for close). */
  async idle(): Promise<void> {
    await this.flushing;
  }

  private async flushLoop(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting;
      this.waiting = [];
      try {
        await this.write();
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err as Error);
      }
    }
    this.flushing = undefined;
  }
}
