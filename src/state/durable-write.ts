/**
 * The one durable write of a state file: a temp file written and fsynced, renamed over
 * the old file, and the directory fsynced, so a kill -9 or power cut at any point leaves
 * the old or the new content, never a mix and never neither.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

let tmpSerial = 0;

/** Replace `file` with `text` atomically and durably (root-only, mode 0600, unless told). */
export async function writeFileDurably(file: string, text: string, mode = 0o600): Promise<void> {
  // A name of its own per write: two writers of one file never share a temp file.
  const tmp = `${file}.${process.pid}.${++tmpSerial}.tmp`;
  const fh = await fs.open(tmp, 'w', mode);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  const dir = await fs.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
