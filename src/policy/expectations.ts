/**
 * `policy test -f FILE`: a file of expectations, each "from X to Y on proto/port: allow
 * or deny", checked with the evaluator against the named policies. Pure: the CLI
 * resolves policy names and endpoint names (live labels) before calling run.
 *
 *   {"policies": ["db.json"],
 *    "tests": [{"from": {"app": "web"}, "to": {"app": "db"}, "port": "tcp/5432", "expect": "allow"}]}
 *
 * `from`/`to`: a label map (an endpoint with exactly these labels), the name of a live
 * endpoint (its labels and address), or an IPv4 address outside the network.
 */
import { parseIpv4 } from '../net/ipv4';
import { formatLabels, labelsProblem, type Labels } from './labels';
import { evaluate, parseTraffic, type EvalEndpoint, type EvalTraffic, type Verdict } from './evaluate';
import { PolicyError, type Policy } from './model';

export type EndpointRef = { labels: Labels } | { name: string } | { address: string };

export interface Expectation {
  from: EndpointRef;
  to: EndpointRef;
  traffic: EvalTraffic;
  port: string;
  expect: 'allow' | 'deny';
}

export interface ExpectationFile {
  /** Policy files (relative to the test file) or names of applied policies. */
  policies: string[];
  /** Network the endpoints are on (default: the default network). */
  network?: string;
  tests: Expectation[];
}

function refOf(v: unknown, path: string): EndpointRef {
  if (typeof v === 'string') {
    if (/^\d+\.\d+\.\d+\.\d+$/.test(v)) {
      try {
        parseIpv4(v);
      } catch (err) {
        throw new PolicyError(path, (err as Error).message, undefined, { cause: err });
      }
      return { address: v };
    }
    if (v === '') throw new PolicyError(path, 'an endpoint name must not be empty');
    return { name: v };
  }
  const bad = labelsProblem(v);
  if (bad) throw new PolicyError(path, `want a label map, an endpoint name or an IPv4 address: ${bad}`);
  return { labels: v as Labels };
}

export function parseExpectationFile(text: string, source: string): ExpectationFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new PolicyError('', `not valid JSON: ${(err as Error).message}`, source, { cause: err });
  }
  try {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new PolicyError('', 'must be an object with "policies" and "tests"');
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj))
      if (!['policies', 'network', 'tests'].includes(k))
        throw new PolicyError(k, 'unknown field (allowed: policies, network, tests)');
    const policies = obj['policies'];
    if (!Array.isArray(policies) || !policies.every((p) => typeof p === 'string' && p !== ''))
      throw new PolicyError('policies', 'must be a list of policy files or names');
    const tests = obj['tests'];
    if (!Array.isArray(tests) || tests.length === 0) throw new PolicyError('tests', 'must be a non-empty list');
    const out: ExpectationFile = {
      policies: policies as string[],
      tests: tests.map((t, i): Expectation => {
        const path = `tests[${i}]`;
        if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new PolicyError(path, 'must be an object');
        const o = t as Record<string, unknown>;
        for (const k of Object.keys(o))
          if (!['from', 'to', 'port', 'expect'].includes(k))
            throw new PolicyError(`${path}.${k}`, 'unknown field (allowed: from, to, port, expect)');
        const port = o['port'];
        if (typeof port !== 'string')
          throw new PolicyError(`${path}.port`, 'must be a string such as "tcp/5432" or "icmp"');
        let traffic: EvalTraffic;
        try {
          traffic = parseTraffic(port);
        } catch (err) {
          throw new PolicyError(`${path}.port`, (err as Error).message, undefined, { cause: err });
        }
        const expect = o['expect'];
        if (expect !== 'allow' && expect !== 'deny')
          throw new PolicyError(`${path}.expect`, 'must be "allow" or "deny"');
        return { from: refOf(o['from'], `${path}.from`), to: refOf(o['to'], `${path}.to`), traffic, port, expect };
      }),
    };
    if (obj['network'] !== undefined) {
      if (typeof obj['network'] !== 'string') throw new PolicyError('network', 'must be a string');
      out.network = obj['network'];
    }
    return out;
  } catch (err) {
    if (err instanceof PolicyError && err.source === undefined)
      throw new PolicyError(err.path, err.reason, source, { cause: err });
    throw err;
  }
}

export interface ExpectationResult {
  expectation: Expectation;
  verdict: Verdict;
  pass: boolean;
  /** One line: "PASS  {app=web} -> {app=db}  tcp/5432  allow  (allowed by db-ingress ingress[0])". */
  line: string;
}

export function formatRef(ref: EndpointRef): string {
  if ('labels' in ref) return `{${formatLabels(ref.labels)}}`;
  if ('name' in ref) return ref.name;
  return ref.address;
}

/**
 * Check every expectation. `resolve` turns a reference into an endpoint (names: live
 * labels; throws when unknown). `policies` are already restricted to the network.
 */
export function runExpectations(
  file: ExpectationFile,
  policies: readonly Policy[],
  resolve: (ref: EndpointRef) => EvalEndpoint,
): ExpectationResult[] {
  return file.tests.map((e) => {
    const verdict = evaluate(policies, resolve(e.from), resolve(e.to), e.traffic);
    const got = verdict.allowed ? 'allow' : 'deny';
    const pass = got === e.expect;
    const line = `${pass ? 'PASS' : 'FAIL'}  ${formatRef(e.from)} -> ${formatRef(e.to)}  ${e.port}  ${got}${pass ? '' : ` (expected ${e.expect})`}  (${verdict.reason})`;
    return { expectation: e, verdict, pass, line };
  });
}

/** Labels-only and address references resolve without a daemon. */
export function resolveOffline(ref: EndpointRef): EvalEndpoint {
  if ('labels' in ref) return { labels: ref.labels };
  if ('address' in ref) return { labels: {}, ip: ref.address, external: true };
  throw new Error(`endpoint ${ref.name}: names need the daemon's live endpoints`);
}
