/**
 * Durable state files for the stores without etcd (file.ts, mesh.ts): one write is a temp
 * file written and fsynced, renamed over the old file, and the directory fsynced, so a
 * kill -9 at any point leaves the old or the new content; concurrent callers share one
 * write (group commit).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** Replace `file` with `text` atomically and durably (mode 0600). */
export async function writeFileDurably(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fs.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
  const dir = await fs.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

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
