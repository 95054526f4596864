import { describe, expect, it } from 'vitest';
import { formatMac, isMacText, parseMac } from '../../src/net/mac';

describe('MAC text (src/net/mac.ts)', () => {
  it('parses and formats six hex bytes', () => {
    expect(parseMac('02:42:ac:11:00:02')).toBe(0x02_42_ac_11_00_02);
    expect(parseMac('0A:58:0A:20:07:07')).toBe(0x0a_58_0a_20_07_07);
    expect(formatMac(parseMac('ff:ff:ff:ff:ff:ff')!)).toBe('ff:ff:ff:ff:ff:ff');
    expect(formatMac(0x0a_58_0a_20_07_07)).toBe('0a:58:0a:20:07:07');
  });

  it('refuses anything else', () => {
    for (const bad of [
      '',
      '02:42:ac:11:00',
      '02:42:ac:11:00:02:03',
      '02-42-ac-11-00-02',
      '2:42:ac:11:00:02',
      'zz:42:ac:11:00:02',
      ' 02:42:ac:11:00:02',
    ]) {
      expect(isMacText(bad), bad).toBe(false);
      expect(parseMac(bad), bad).toBeUndefined();
    }
  });
});
