/**
 * One reader for the fields of a JSON body, shared by the API server, the Docker plugin,
 * the CNI plugin and the state files. Each surface says how it names a field in a
 * message and which error it throws (the API's coded error, Docker's `{"Err": ...}`
 * PluginError, a CNI error code, a state-file error), so every surface keeps its own
 * wire shape while the checks themselves exist once. No imports: the CNI plugin starts
 * on every pod and loads this.
 */
export type JsonObject = Record<string, unknown>;

export interface FieldSurface {
  /** How a message names `field` (e.g. `field 'name'` for the API, `dns.search` for CNI). */
  name(field: string): string;
  /** The surface's error for a message about a field. */
  error(message: string): Error;
}

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class FieldReader {
  constructor(private readonly surface: FieldSurface) {}

  /** A reader for the fields of an object nested at `prefix` (CNI's `dns.`), same errors. */
  within(prefix: string): FieldReader {
    const outer = this.surface;
    return new FieldReader({ name: (field) => outer.name(`${prefix}${field}`), error: (m) => outer.error(m) });
  }

  /** The surface's error for `field` with `problem` ("must be a string"). */
  fail(field: string, problem: string): Error {
    return this.surface.error(`${this.surface.name(field)} ${problem}`);
  }

  /** `v` (the value of `field`, e.g. an array element "endpoints[2]") as an object. */
  asObject(v: unknown, field: string): JsonObject {
    if (!isJsonObject(v)) throw this.fail(field, 'must be an object');
    return v;
  }

  /** An object whose values are all strings (labels, options), or undefined when absent or null. */
  optStringRecord(o: JsonObject, field: string): Record<string, string> | undefined {
    const v = this.optObject(o, field);
    if (v === undefined) return undefined;
    if (!Object.values(v).every((s) => typeof s === 'string')) throw this.fail(field, 'must be an object of strings');
    return v as Record<string, string>;
  }

  /** A string, or undefined when absent or null. */
  optString(o: JsonObject, field: string): string | undefined {
    const v = o[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw this.fail(field, 'must be a string');
    return v;
  }

  /** A non-empty string (or any string, '' too, with `allowEmpty`). */
  reqString(o: JsonObject, field: string, opts: { allowEmpty?: boolean } = {}): string {
    const v = this.optString(o, field);
    if (v === undefined || (v === '' && opts.allowEmpty !== true))
      throw this.fail(field, opts.allowEmpty === true ? 'is required' : 'is required and must be a non-empty string');
    return v;
  }

  /** An object, or undefined when absent or null. */
  optObject(o: JsonObject, field: string): JsonObject | undefined {
    const v = o[field];
    if (v === undefined || v === null) return undefined;
    if (!isJsonObject(v)) throw this.fail(field, 'must be an object');
    return v;
  }

  /** An array, or undefined when absent or null. */
  optArray(o: JsonObject, field: string): unknown[] | undefined {
    const v = o[field];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) throw this.fail(field, 'must be an array');
    return v as unknown[];
  }

  /** A required array. */
  reqArray(o: JsonObject, field: string): unknown[] {
    const v = this.optArray(o, field);
    if (v === undefined) throw this.fail(field, 'is required and must be an array');
    return v;
  }

  /** An array of strings (each non-empty when `nonEmpty`), or undefined when absent or null. */
  optStringArray(o: JsonObject, field: string, opts: { nonEmpty?: boolean } = {}): string[] | undefined {
    const v = o[field];
    if (v === undefined || v === null) return undefined;
    return this.stringArrayOf(v, field, opts);
  }

  /** A required array of strings (each non-empty when `nonEmpty`). */
  reqStringArray(o: JsonObject, field: string, opts: { nonEmpty?: boolean } = {}): string[] {
    return this.stringArrayOf(o[field], field, opts);
  }

  /** true or false, or undefined when absent. */
  optBoolean(o: JsonObject, field: string): boolean | undefined {
    const v = o[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw this.fail(field, 'must be true or false');
    return v;
  }

  /** An integer in [min, max], or undefined when absent. */
  optInteger(o: JsonObject, field: string, min: number, max: number): number | undefined {
    const v = o[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw this.fail(field, `must be an integer from ${min} to ${max}`);
    return v;
  }

  /** A required integer in [min, max]. */
  reqInteger(o: JsonObject, field: string, min: number, max: number): number {
    const v = this.optInteger(o, field, min, max);
    if (v === undefined) throw this.fail(field, `is required: an integer from ${min} to ${max}`);
    return v;
  }

  private stringArrayOf(v: unknown, field: string, opts: { nonEmpty?: boolean }): string[] {
    const ok = (s: unknown): boolean => typeof s === 'string' && (opts.nonEmpty !== true || s !== '');
    if (!Array.isArray(v) || !v.every(ok))
      throw this.fail(
        field,
        opts.nonEmpty === true ? 'must be an array of non-empty strings' : 'must be an array of strings',
      );
    return v as string[];
  }
}

/** How a surface words the two ways a body fails to be a JSON object. */
export interface BodyErrors {
  /** What an empty body means; undefined: an empty body is malformed. */
  emptyAs?: JsonObject;
  /** What a literal `null` means; undefined: it is not an object. */
  nullAs?: JsonObject;
  malformed(cause: Error): Error;
  notObject(): Error;
}

/** Parse a body that must be a JSON object. */
export function parseJsonObject(text: string, errors: BodyErrors): JsonObject {
  if (errors.emptyAs !== undefined && text.trim() === '') return errors.emptyAs;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw errors.malformed(err as Error);
  }
  if (v === null && errors.nullAs !== undefined) return errors.nullAs;
  if (!isJsonObject(v)) throw errors.notObject();
  return v;
}
