import { describe, expect, it } from 'vitest';
import { evaluate, parseTraffic, type EvalEndpoint } from '../../src/policy/evaluate';
import { validatePolicy, type Policy } from '../../src/policy/model';
import { parseExpectationFile, resolveOffline, runExpectations } from '../../src/policy/expectations';

const opts = { defaultNetwork: 'weavets' };
const P = (doc: unknown): Policy => validatePolicy(doc, opts);

const dbIngress = P({
  name: 'db-ingress',
  selector: { app: 'db' },
  ingress: [{ from: [{ selector: { app: 'web' } }], ports: [{ protocol: 'tcp', port: 5432 }] }],
});
const dbMetrics = P({
  name: 'db-metrics',
  selector: { app: 'db' },
  ingress: [
    {
      from: [{ cidr: '10.40.0.0/16', except: ['10.40.9.0/24'] }],
      ports: [{ protocol: 'tcp', port: 9100, endPort: 9199 }, { protocol: 'icmp' }],
    },
  ],
});
const webEgress = P({
  name: 'web-egress',
  selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['web'] }] },
  egress: [
    { to: [{ selector: { app: 'db' } }], ports: [{ protocol: 'tcp', port: 5432 }] },
    { ports: [{ protocol: 'udp', port: 53 }] },
  ],
});
const denyAll = P({ name: 'deny-all', selector: { app: 'locked' }, ingress: [] });
const auditDb = P({ name: 'audit-cache', mode: 'audit', selector: { app: 'cache' }, ingress: [] });

const web = { labels: { app: 'web' }, ip: '10.32.0.2' };
const db = { labels: { app: 'db' }, ip: '10.32.0.3' };
const other = { labels: { app: 'other' }, ip: '10.32.0.4' };
const monitor = { labels: {}, ip: '10.40.1.1' };
const excepted = { labels: {}, ip: '10.40.9.1' };

// [policies, from, to, traffic, allowed, rule or reason fragment]
const vectors: [Policy[], EvalEndpoint, EvalEndpoint, string, boolean, string][] = [
  [[], web, db, 'tcp/5432', true, 'no policy isolates'],
  [[dbIngress], web, db, 'tcp/5432', true, 'db-ingress ingress[0]'],
  [[dbIngress], other, db, 'tcp/5432', false, 'db-ingress isolates the receiver (ingress)'],
  [[dbIngress], web, db, 'tcp/5433', false, 'no rule allows tcp/5433'],
  [[dbIngress], web, db, 'udp/5432', false, 'db-ingress'],
  [[dbIngress], web, db, 'icmp', false, 'db-ingress'],
  // db is not isolated for egress, web not for ingress: replies and db-initiated traffic pass.
  [[dbIngress], db, web, 'tcp/80', true, 'no policy isolates'],
  // Union of rules over every policy selecting db.
  [[dbIngress, dbMetrics], monitor, db, 'tcp/9150', true, 'db-metrics ingress[0]'],
  [[dbIngress, dbMetrics], monitor, db, 'tcp/9200', false, 'db-ingress, db-metrics isolate'],
  [[dbIngress, dbMetrics], excepted, db, 'tcp/9150', false, 'db-metrics'],
  [[dbIngress, dbMetrics], monitor, db, 'icmp', true, 'db-metrics ingress[0]'],
  [[dbIngress, dbMetrics], web, db, 'tcp/5432', true, 'db-ingress ingress[0]'],
  // A selector peer never matches an address by CIDR alone.
  [[dbMetrics], { labels: { app: 'x' }, ip: '10.32.0.9' }, db, 'tcp/9100', false, 'db-metrics'],
  // Egress: web may reach db on 5432 and anyone on udp/53, nothing else.
  [[webEgress], web, db, 'tcp/5432', true, 'web-egress egress[0]'],
  [[webEgress], web, other, 'udp/53', true, 'web-egress egress[1]'],
  [[webEgress], web, other, 'tcp/5432', false, 'isolates the sender (egress)'],
  [[webEgress], other, db, 'tcp/1', true, 'no policy isolates'],
  // Both ends must allow.
  [[webEgress, dbIngress], web, db, 'tcp/5432', true, 'web-egress egress[0] and db-ingress ingress[0]'],
  [
    [webEgress, denyAll],
    web,
    { labels: { app: 'locked' }, ip: '10.32.0.5' },
    'udp/53',
    false,
    'deny-all isolates the receiver',
  ],
  [[auditDb], web, { labels: { app: 'cache' }, ip: '10.32.0.6' }, 'tcp/6379', false, 'audit-cache'],
];

describe('evaluator vectors', () => {
  vectors.forEach(([policies, from, to, traffic, allowed, why], i) => {
    it(`vector ${i}: ${JSON.stringify(from.labels)} -> ${JSON.stringify(to.labels)} ${traffic} under [${policies.map((p) => p.name).join(',')}]`, () => {
      const v = evaluate(policies, from, to, parseTraffic(traffic));
      expect(v.allowed).toBe(allowed);
      expect(v.reason).toContain(why);
    });
  });

  it('reports audit-only denials', () => {
    const v = evaluate([auditDb], web, { labels: { app: 'cache' } }, parseTraffic('tcp/1'));
    expect(v.ingress.auditOnly).toBe(true);
    expect(evaluate([denyAll], web, { labels: { app: 'locked' } }, parseTraffic('tcp/1')).ingress.auditOnly).toBe(
      false,
    );
    expect(evaluate([denyAll], web, { labels: { app: 'locked' } }, parseTraffic('tcp/1'), true).ingress.auditOnly).toBe(
      true,
    );
  });

  it('parses traffic', () => {
    expect(parseTraffic('tcp/5432')).toEqual({ protocol: 'tcp', port: 5432 });
    expect(parseTraffic('ICMP')).toEqual({ protocol: 'icmp' });
    expect(() => parseTraffic('tcp')).toThrow(/needs a port/);
    expect(() => parseTraffic('tcp/70000')).toThrow(/out of range/);
    expect(() => parseTraffic('icmp/8')).toThrow(/no port/);
  });
});

describe('policy test files', () => {
  const TESTS = `{"policies": ["db.json"],
   "tests": [{"from": {"app": "web"}, "to": {"app": "db"}, "port": "tcp/5432", "expect": "allow"},
             {"from": {"app": "other"}, "to": {"app": "db"}, "port": "tcp/5432", "expect": "deny"}]}`;

  it('passes the example of the issue and fails a wrong expectation', () => {
    const file = parseExpectationFile(TESTS, 'db-tests.json');
    expect(file.policies).toEqual(['db.json']);
    const results = runExpectations(file, [dbIngress], resolveOffline);
    expect(results.map((r) => r.pass)).toEqual([true, true]);
    expect(results[0]!.line).toContain('allowed by db-ingress ingress[0]');
    const wrong = parseExpectationFile(TESTS.replace('"expect": "deny"', '"expect": "allow"'), 'x.json');
    const r2 = runExpectations(wrong, [dbIngress], resolveOffline);
    expect(r2[1]!.pass).toBe(false);
    expect(r2[1]!.line).toMatch(/^FAIL .* deny \(expected allow\)/);
  });

  it('refuses malformed expectations with the path', () => {
    expect(() =>
      parseExpectationFile(
        '{"policies": [], "tests": [{"from": {}, "to": {}, "port": "tcp/99999", "expect": "allow"}]}',
        't.json',
      ),
    ).toThrow(/^t\.json: tests\[0\]\.port: .*out of range/);
    expect(() =>
      parseExpectationFile(
        '{"policies": [], "tests": [{"from": {}, "to": {}, "port": "tcp/1", "expect": "yes"}]}',
        't.json',
      ),
    ).toThrow(/tests\[0\]\.expect/);
    expect(() => parseExpectationFile('{"policies": [], "tests": [], "extra": 1}', 't.json')).toThrow(
      /extra: unknown field/,
    );
  });
});
