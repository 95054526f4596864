import { describe, expect, it } from 'vitest';
import { parseLabelArg, selectorMatches, labelKeyProblem } from '../../src/policy/labels';
import { parsePolicies, parseSelector, PolicyError, validatePolicy } from '../../src/policy/model';

const opts = { networks: ['weavets', 'blue'], defaultNetwork: 'weavets' };

const DB_JSON = `{"name": "db-ingress", "network": "weavets",
 "selector": {"app": "db"},
 "ingress": [{"from": [{"selector": {"app": "web"}}],
              "ports": [{"protocol": "tcp", "port": 5432}]}]}`;

function refusal(doc: unknown): { path: string; reason: string } {
  try {
    validatePolicy(doc, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    const e = err as PolicyError;
    expect(e.code).toBe('EWEAVETS_POLICY_INVALID');
    return { path: e.path, reason: e.reason };
  }
  throw new Error('accepted');
}

describe('labels', () => {
  it('parses k=v and refuses bad keys and values', () => {
    expect(parseLabelArg('app=web')).toEqual(['app', 'web']);
    expect(parseLabelArg('example.com/tier=a.b_c-d')).toEqual(['example.com/tier', 'a.b_c-d']);
    expect(parseLabelArg('empty=')).toEqual(['empty', '']);
    expect(() => parseLabelArg('app')).toThrow(/KEY=VALUE/);
    expect(() => parseLabelArg('-app=x')).toThrow(/label key/);
    expect(() => parseLabelArg('app=has space')).toThrow(/label value/);
    expect(() => parseLabelArg(`app=${'x'.repeat(254)}`)).toThrow(/label value/);
    expect(labelKeyProblem('Bad_Prefix/x')).toMatch(/prefix/);
  });

  it('matches selectors with Kubernetes semantics', () => {
    const s = parseSelector(
      {
        matchLabels: { app: 'db' },
        matchExpressions: [
          { key: 'tier', operator: 'In', values: ['a', 'b'] },
          { key: 'env', operator: 'NotIn', values: ['prod'] },
          { key: 'team', operator: 'Exists' },
          { key: 'legacy', operator: 'DoesNotExist' },
        ],
      },
      'selector',
    );
    expect(selectorMatches(s, { app: 'db', tier: 'a', team: 'x' })).toBe(true);
    // NotIn holds for an endpoint without the key.
    expect(selectorMatches(s, { app: 'db', tier: 'b', team: 'x', env: 'dev' })).toBe(true);
    expect(selectorMatches(s, { app: 'db', tier: 'c', team: 'x' })).toBe(false);
    expect(selectorMatches(s, { app: 'db', tier: 'a', team: 'x', env: 'prod' })).toBe(false);
    expect(selectorMatches(s, { app: 'db', tier: 'a' })).toBe(false);
    expect(selectorMatches(s, { app: 'db', tier: 'a', team: 'x', legacy: '' })).toBe(false);
    expect(selectorMatches(s, { app: 'web', tier: 'a', team: 'x' })).toBe(false);
    expect(selectorMatches(parseSelector({}, 's'), {})).toBe(true);
  });
});

describe('policy documents', () => {
  it('parses the example of the issue, from JSON and from YAML alike', () => {
    const fromJson = parsePolicies(DB_JSON, 'db.json', opts).policies;
    const yaml = `name: db-ingress
network: weavets
selector: {app: db}
ingress:
  - from:
      - selector: {app: web}
    ports:
      - protocol: tcp
        port: 5432
`;
    const fromYaml = parsePolicies(yaml, 'db.yaml', opts).policies;
    expect(fromYaml).toEqual(fromJson);
    expect(fromJson[0]).toEqual({
      name: 'db-ingress',
      network: 'weavets',
      selector: { matchLabels: { app: 'db' }, matchExpressions: [] },
      mode: 'enforce',
      types: ['ingress'],
      ingress: [
        {
          peers: [{ selector: { matchLabels: { app: 'web' }, matchExpressions: [] } }],
          ports: [{ protocol: 'tcp', port: 5432 }],
        },
      ],
      egress: [],
    });
  });

  it('isolates egress only when the policy has egress, unless policyTypes says otherwise', () => {
    expect(validatePolicy({ name: 'a', selector: {}, egress: [] }, opts).types).toEqual(['ingress', 'egress']);
    expect(validatePolicy({ name: 'a', selector: {}, policyTypes: ['Egress'], egress: [] }, opts).types).toEqual([
      'egress',
    ]);
    expect(validatePolicy({ name: 'a', selector: {} }, opts).types).toEqual(['ingress']);
  });

  it('takes several policies from a JSON list or YAML documents', () => {
    const two = parsePolicies('[{"name":"a","selector":{}},{"name":"b","selector":{}}]', 'x.json', opts).policies;
    expect(two.map((p) => p.name)).toEqual(['a', 'b']);
    const yaml = parsePolicies('name: a\nselector: {}\n---\nname: b\nselector: {}\n', 'x.yaml', opts).policies;
    expect(yaml.map((p) => p.name)).toEqual(['a', 'b']);
    expect(() => parsePolicies('[{"name":"a","selector":{}},{"name":"a","selector":{}}]', 'x.json', opts)).toThrow(
      /appears twice/,
    );
  });

  it('refuses bad input with the path of the field and the reason', () => {
    const base = JSON.parse(DB_JSON) as Record<string, unknown>;
    expect(refusal({ ...base, ingres: [] })).toEqual({
      path: 'ingres',
      reason: expect.stringMatching(/unknown field/),
    });
    expect(refusal({ ...base, ingress: [{ form: [] }] })).toEqual({
      path: 'ingress[0].form',
      reason: expect.stringMatching(/unknown field/),
    });
    expect(refusal({ ...base, ingress: [{ ports: [{ protocol: 'tcp', port: 70000 }] }] })).toEqual({
      path: 'ingress[0].ports[0].port',
      reason: 'port 70000 is out of range (1-65535)',
    });
    expect(refusal({ ...base, ingress: [{ ports: [{ protocol: 'tcp', port: 0 }] }] }).path).toBe(
      'ingress[0].ports[0].port',
    );
    expect(refusal({ ...base, ingress: [{ ports: [{ protocol: 'tcp', port: 90, endPort: 80 }] }] }).path).toBe(
      'ingress[0].ports[0].endPort',
    );
    expect(refusal({ ...base, ingress: [{ ports: [{ protocol: 'gre' }] }] }).path).toBe('ingress[0].ports[0].protocol');
    expect(refusal({ ...base, network: 'nowhere' })).toEqual({
      path: 'network',
      reason: expect.stringMatching(/does not exist/),
    });
    expect(refusal({ ...base, selector: { 'bad key!': 'x' } })).toEqual({
      path: 'selector.bad key!',
      reason: expect.stringMatching(/^bad selector/),
    });
    expect(refusal({ ...base, selector: { app: 7 } }).reason).toMatch(/bad selector/);
    expect(refusal({ ...base, selector: { matchExpressions: [{ key: 'a', operator: 'Maybe' }] } }).path).toBe(
      'selector.matchExpressions[0].operator',
    );
    expect(refusal({ ...base, selector: { matchExpressions: [{ key: 'a', operator: 'In', values: [] }] } }).path).toBe(
      'selector.matchExpressions[0].values',
    );
    expect(
      refusal({ ...base, selector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] } }).path,
    ).toBe('selector.matchExpressions[0].values');
    expect(refusal({ ...base, ingress: [{ from: [{ cidr: '10.0.0.1/8' }] }] })).toEqual({
      path: 'ingress[0].from[0].cidr',
      reason: expect.stringMatching(/host bits/),
    });
    expect(refusal({ ...base, ingress: [{ from: [{ nothing: 1 }] }] }).path).toBe('ingress[0].from[0]');
    expect(refusal({ ...base, egress: [{ from: [] }] }).path).toBe('egress[0].from');
    expect(refusal({ ...base, name: 'Bad Name' }).path).toBe('name');
    expect(refusal({ ...base, mode: 'maybe' }).path).toBe('mode');
    expect(refusal({ ...base, selector: undefined }).path).toBe('selector');
    expect(refusal([]).path).toBe('');
  });

  it('names the file and refuses text that is neither JSON nor YAML', () => {
    expect(() => parsePolicies('{"name": ', 'db.json', opts)).toThrow(/^db\.json: not valid JSON/);
    expect(() => parsePolicies('name: [unclosed', 'db.yaml', opts)).toThrow(/^db\.yaml: not valid YAML/);
    expect(() => parsePolicies('name: a\nname: b\nselector: {}\n', 'dup.yaml', opts)).toThrow(/not valid YAML/);
    expect(() =>
      parsePolicies('[{"name":"a","selector":{}},{"name":"b","selector":{},"x":1}]', 'two.json', opts),
    ).toThrow(/^two\.json \(policy 2\): x: unknown field/);
  });
});
