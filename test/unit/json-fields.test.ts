import { describe, expect, it } from 'vitest';
import { FieldReader, parseJsonObject } from '../../src/json-fields';
import {
  parseBody,
  reqString as dockerReqString,
  optString as dockerOptString,
  PluginError,
} from '../../src/docker/protocol';
import { decodeConfig, parseNetConf } from '../../src/cni/invocation';
import { CniError, CNI_ERR } from '../../src/cni/spec';

class Refused extends Error {}
const api = new FieldReader({ name: (f) => `field '${f}'`, error: (m) => new Refused(m) });

describe('FieldReader', () => {
  it('reads present fields and treats absent or null as not given', () => {
    const o = { s: 'x', e: '', n: null, a: ['p', 'q'], b: false, i: 7, o: { k: 'v' } };
    expect(api.optString(o, 's')).toBe('x');
    expect(api.optString(o, 'n')).toBeUndefined();
    expect(api.optString(o, 'missing')).toBeUndefined();
    expect(api.reqString(o, 'e', { allowEmpty: true })).toBe('');
    expect(api.reqStringArray(o, 'a', { nonEmpty: true })).toEqual(['p', 'q']);
    expect(api.optBoolean(o, 'b')).toBe(false);
    expect(api.reqInteger(o, 'i', 0, 10)).toBe(7);
    expect(api.optStringRecord(o, 'o')).toEqual({ k: 'v' });
    expect(api.optObject(o, 'n')).toBeUndefined();
  });

  it("names the field in the surface's words and throws the surface's error", () => {
    const o = { s: 5, e: '', a: ['p', ''], b: 'yes', i: 1.5, o: { k: 1 } };
    expect(() => api.optString(o, 's')).toThrow(new Refused("field 's' must be a string"));
    expect(() => api.reqString(o, 'e')).toThrow("field 'e' is required and must be a non-empty string");
    expect(() => api.reqString(o, 'missing')).toThrow("field 'missing' is required and must be a non-empty string");
    expect(() => api.reqStringArray(o, 'a', { nonEmpty: true })).toThrow(
      "field 'a' must be an array of non-empty strings",
    );
    expect(() => api.optBoolean(o, 'b')).toThrow("field 'b' must be true or false");
    expect(() => api.reqInteger(o, 'i', 0, 10)).toThrow("field 'i' must be an integer from 0 to 10");
    expect(() => api.optStringRecord(o, 'o')).toThrow("field 'o' must be an object of strings");
    expect(() => api.within('dns.').optArray({ x: 1 }, 'x')).toThrow("field 'dns.x' must be an array");
    expect(() => api.reqString(o, 's')).toThrow(Refused);
  });

  it('parses a body that must be an object, keeping the parse error as cause', () => {
    const errors = {
      malformed: (cause: Error) => new Refused(`bad JSON: ${cause.message}`, { cause }),
      notObject: () => new Refused('not an object'),
    };
    expect(parseJsonObject('{"a":1}', errors)).toEqual({ a: 1 });
    expect(() => parseJsonObject('[1]', errors)).toThrow('not an object');
    expect(() => parseJsonObject('null', errors)).toThrow('not an object');
    expect(() => parseJsonObject('', errors)).toThrow(/bad JSON/);
    expect(parseJsonObject(' ', { ...errors, emptyAs: {} })).toEqual({});
    let caught: unknown;
    try {
      parseJsonObject('{', errors);
    } catch (err) {
      caught = err;
    }
    expect((caught as Error).cause).toBeInstanceOf(SyntaxError);
  });
});

describe('the surfaces keep their own error shapes', () => {
  it('Docker: 400 PluginErrors, "" is not given, an empty or null body is {}', () => {
    expect(parseBody('')).toEqual({});
    expect(parseBody('null')).toEqual({});
    expect(() => parseBody('{')).toThrow(PluginError);
    expect(dockerOptString({ A: '' }, 'A')).toBeUndefined();
    let caught: unknown;
    try {
      dockerReqString({}, 'NetworkID');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PluginError);
    expect((caught as PluginError).status).toBe(400);
    expect((caught as Error).message).toBe('field NetworkID is required and must be a non-empty string');
  });

  it('CNI: decode errors are code 6, field errors code 7 naming the path', () => {
    const code = (f: () => unknown): number | undefined => {
      try {
        f();
      } catch (err) {
        return err instanceof CniError ? err.code : undefined;
      }
      return undefined;
    };
    expect(code(() => decodeConfig('{'))).toBe(CNI_ERR.DECODE);
    expect(code(() => decodeConfig('[]'))).toBe(CNI_ERR.DECODE);
    const conf = { cniVersion: '1.0.0', name: 'n', dns: { search: 'x' } };
    expect(code(() => parseNetConf(conf, 'ADD'))).toBe(CNI_ERR.INVALID_CONFIG);
    expect(() => parseNetConf(conf, 'ADD')).toThrow('dns.search must be an array of strings');
  });
});
