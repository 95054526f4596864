/**
 * Work that must not interleave (link changes, state-file writes, nft transactions) runs
 * through one queue: each task starts after every earlier one has settled, and a failed
 * task rejects its own caller only, never the tasks behind it.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Run `task` after everything queued before it; resolves or rejects with its outcome. */
  run<T>(task: () => Promise<T> | T): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every task queued so far has settled (never rejects). */
  async idle(): Promise<void> {
    await this.tail;
  }
}
