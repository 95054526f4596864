/**
 * Labels on endpoints and the selectors that pick endpoints by them. Keys and values
 * follow Kubernetes' label syntax (operators already know it): a key is an optional
 * DNS-subdomain prefix and a name ("app", "k8s.namespace", "example.com/tier"), a value
 * is up to 63 characters of letters, digits, '-', '_' and '.'. Pure.
 */
import { compareText } from '../text-order';

export type Labels = Record<string, string>;

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface SelectorExpression {
  key: string;
  operator: SelectorOperator;
  /** For In and NotIn only. */
  values?: string[];
}

/** A label selector: every matchLabels pair and every expression must hold ({} selects all). */
export interface Selector {
  matchLabels: Labels;
  matchExpressions: SelectorExpression[];
}

const NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const PREFIX_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
// Kubernetes caps values at 63; pod names (k8s.pod) may be DNS subdomains of up to 253.
const VALUE_RE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?)?$/;

/** Why a label key is not valid, or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !PREFIX_RE.test(prefix))) {
    return `label key ${JSON.stringify(key)}: the prefix before '/' must be a DNS subdomain (lowercase letters, digits, '-', '.')`;
  }
  if (!NAME_RE.test(name)) {
    return `label key ${JSON.stringify(key)}: want 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

/** Why a label value is not valid, or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (!VALUE_RE.test(value)) {
    return `label value ${JSON.stringify(value)}: want at most 253 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

/** "k=v" as given to `attach --label`; throws Error with the reason. */
export function parseLabelArg(text: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new Error(`${JSON.stringify(text)} is not KEY=VALUE`);
  const key = text.slice(0, eq);
  const value = text.slice(eq + 1);
  const bad = labelKeyProblem(key) ?? labelValueProblem(value);
  if (bad) throw new Error(bad);
  return [key, value];
}

/** Validate a whole label set from an untrusted source; returns the reason or undefined. */
export function labelsProblem(labels: unknown): string | undefined {
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels))
    return 'labels must be an object of strings';
  for (const [k, v] of Object.entries(labels)) {
    if (typeof v !== 'string') return `label ${JSON.stringify(k)}: the value must be a string`;
    const bad = labelKeyProblem(k) ?? labelValueProblem(v);
    if (bad) return bad;
  }
  return undefined;
}

/** Whether a selector picks an endpoint with these labels (Kubernetes semantics). */
export function selectorMatches(selector: Selector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels)) {
    if (labels[k] !== v) return false;
  }
  for (const e of selector.matchExpressions) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    switch (e.operator) {
      case 'In':
        if (!has || !(e.values ?? []).includes(labels[e.key]!)) return false;
        break;
      case 'NotIn':
        // As in Kubernetes: an endpoint without the key is "not in" any set.
        if (has && (e.values ?? []).includes(labels[e.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** A selector as one line for tables and verdicts: "app=web,tier in (a,b)"; "{}" selects all. */
export function formatSelector(selector: Selector): string {
  const parts = Object.entries(selector.matchLabels).map(([k, v]) => `${k}=${v}`);
  for (const e of selector.matchExpressions) {
    if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
    else parts.push(`${e.key} ${e.operator === 'In' ? 'in' : 'notin'} (${(e.values ?? []).join(',')})`);
  }
  return parts.length === 0 ? '{}' : parts.join(',');
}

export function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels).sort(([a], [b]) => compareText(a, b));
  return entries.length === 0 ? '' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}
