/**
 * A versioned, validated JSON state file: `{"version": N, ...fields}`, written durably
 * (src/state/durable-write.ts) one write at a time, and read through a validator, never
 * a cast. A file from before versioning (no `version` field) is read by the format's
 * `parseUnversioned` and written back in the current format at the next write, so an
 * upgrade keeps what the old daemon recorded. A corrupt file, or one written by a newer
 * weavets, fails with a StateFileError naming the file and what to do.
 */
import * as fs from 'node:fs';
import { WeavetsError } from '../errors';
import { FieldReader, isJsonObject, type JsonObject } from '../json-fields';
import { SerialQueue } from '../serial-queue';
import { writeFileDurably } from './durable-write';

export class StateFileError extends WeavetsError {
  constructor(
    readonly file: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super('EWEAVETS_STATE_INVALID', `state file ${file}: ${problem}`, options);
    this.name = 'StateFileError';
  }
}

const REMEDY = 'with the daemon stopped, fix the file or delete it (deleting forgets what it recorded)';

export interface StateFormat<T> {
  /** The version this code writes, and the only one `parse` reads. */
  readonly version: number;
  /** The value in a document of `version`; `fields` throws StateFileErrors naming the field. */
  parse(doc: JsonObject, fields: FieldReader): T;
  /** The value in a document from before versioning (no `version` field). */
  parseUnversioned(doc: unknown, fields: FieldReader): T;
  /** The fields written beside `version`. */
  toJson(value: T): JsonObject;
}

/**
 * The field reader a state file's validator uses: each problem is a StateFileError naming
 * the file and the field, and saying what to do.
 */
export function stateFileFields(file: string): FieldReader {
  return new FieldReader({
    name: (field) => `field '${field}'`,
    error: (message) => new StateFileError(file, `${message}; ${REMEDY}`),
  });
}

/** The JSON document in a state file's text, or a StateFileError saying it is not JSON. */
export function parseStateJson(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new StateFileError(file, `not valid JSON (${(err as Error).message}); ${REMEDY}`, { cause: err });
  }
}

export class JsonStateFile<T> {
  private readonly writes = new SerialQueue();
  private readonly fields: FieldReader;

  constructor(
    readonly file: string,
    private readonly format: StateFormat<T>,
  ) {
    this.fields = stateFileFields(file);
  }

  /** The value on disk; undefined when there is no file. Throws StateFileError. */
  async read(): Promise<T | undefined> {
    let text: string;
    try {
      text = await fs.promises.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StateFileError(this.file, `cannot read it: ${(err as Error).message}`, { cause: err });
    }
    return this.parse(text);
  }

  /** The same, synchronously (for the CLI and other short-lived readers). */
  readSync(): T | undefined {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StateFileError(this.file, `cannot read it: ${(err as Error).message}`, { cause: err });
    }
    return this.parse(text);
  }

  /** Check the text of the file. Throws StateFileError. */
  parse(text: string): T {
    const doc = parseStateJson(this.file, text);
    if (!isJsonObject(doc) || !('version' in doc)) return this.format.parseUnversioned(doc, this.fields);
    const version = doc['version'];
    if (version === this.format.version) return this.format.parse(doc, this.fields);
    if (typeof version === 'number' && Number.isInteger(version) && version > this.format.version) {
      throw new StateFileError(
        this.file,
        `written by a newer weavets (format version ${version}; this one reads ${this.format.version}); ` +
          'run that version again, or delete the file to start it afresh',
      );
    }
    throw new StateFileError(
      this.file,
      `unknown format version ${JSON.stringify(version)} (this weavets reads ${this.format.version}); ${REMEDY}`,
    );
  }

  /** Replace the file with `value`, durably; writes run one at a time in call order. */
  write(value: T): Promise<void> {
    const text = JSON.stringify({ version: this.format.version, ...this.format.toJson(value) }, null, 1) + '\n';
    return this.writes.run(() => writeFileDurably(this.file, text));
  }
}
