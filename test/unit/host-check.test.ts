import { describe, expect, it } from 'vitest';
import { isAllowedHost, parseHostHeader } from '../../src/api/host-check';

describe('Host header check', () => {
  const lo = { host: '127.0.0.1', port: 6782 };
  it('parses host[:port], bracketed IPv6 and refuses junk', () => {
    expect(parseHostHeader('127.0.0.1:6782')).toEqual({ name: '127.0.0.1', port: 6782 });
    expect(parseHostHeader('[::1]:6782')).toEqual({ name: '::1', port: 6782 });
    expect(parseHostHeader('LocalHost.')).toEqual({ name: 'localhost' });
    for (const bad of ['a b', 'x:99999', 'x:', ':80', '[::1', 'a:b:c'])
      expect(parseHostHeader(bad), bad).toBeUndefined();
  });
  it('accepts the listen address and localhost, with or without the port', () => {
    for (const ok of ['127.0.0.1', '127.0.0.1:6782', 'localhost', 'localhost:6782', 'LOCALHOST:6782'])
      expect(isAllowedHost(ok, lo), ok).toBe(true);
  });
  it('refuses other names, other addresses, other ports, and no Host', () => {
    for (const bad of [
      'evil.example',
      'evil.example:6782',
      '127.0.0.2',
      '127.0.0.1:80',
      'localhost:1',
      'localhost.evil.example',
      '',
      undefined,
    ]) {
      expect(isAllowedHost(bad, lo), String(bad)).toBe(false);
    }
  });
  it('on an IPv6 or wildcard listener: the address, or any IP literal for a wildcard', () => {
    expect(isAllowedHost('[::1]:6782', { host: '::1', port: 6782 })).toBe(true);
    expect(isAllowedHost('127.0.0.1:6782', { host: '::1', port: 6782 })).toBe(false);
    expect(isAllowedHost('192.0.2.7:6782', { host: '0.0.0.0', port: 6782 })).toBe(true);
    expect(isAllowedHost('metrics.example:6782', { host: '0.0.0.0', port: 6782 })).toBe(false);
  });
});
