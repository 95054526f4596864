/**
 * IPv4 addresses and CIDRs, parsed and formatted here and nowhere else. Text must be four
 * decimal octets 0..255 without leading zeros, a prefix 0..32; everything else
 * ("999.1.1.1", "1.2.3", " 1.2.3.4", "01.2.3.4", "0x1.2.3.4") is refused. Addresses are
 * plain numbers (unsigned 32-bit, host order) so the allocator, the policy compiler and
 * the data paths do arithmetic without allocating.
 */

/** Four decimal octets, each 0..255 with no leading zero: the only text parseIpv4 takes. */
const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]\\d|\\d)';
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

export interface Cidr {
  /** Network address as a number. */
  base: number;
  prefix: number;
}

/** Is `text` a dotted-quad IPv4 address (no prefix)? */
export function isIpv4(text: string): boolean {
  return DOTTED_QUAD.test(text);
}

/** "10.32.1.2" -> 0x0a200102. Throws on anything that is not a dotted-quad IPv4 address. */
export function parseIpv4(text: string): number {
  const m = DOTTED_QUAD.exec(text);
  if (!m) throw new Error(`invalid IPv4 address ${JSON.stringify(text)}`);
  return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
}

/** A 32-bit number to a dotted quad; a signed result of bit arithmetic reads as its unsigned value. */
export function formatIpv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Canonical dotted IPv4 text, or undefined when `text` is not an IPv4 address. */
export function canonicalIpv4(text: string): string | undefined {
  return isIpv4(text) ? formatIpv4(parseIpv4(text)) : undefined;
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/**
 * Parse "a.b.c.d/p" (surrounding blanks ignored). With `strict`, host bits must be zero
 * (a network, not an address).
 */
export function parseCidr(text: string, strict = true): Cidr & { address: number } {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) throw new Error(`invalid CIDR ${JSON.stringify(text)}: expected a.b.c.d/prefix`);
  const address = parseIpv4(m[1]!);
  const prefix = Number(m[2]);
  if (prefix > 32) throw new Error(`invalid CIDR ${JSON.stringify(text)}: prefix must be 0..32`);
  const base = (address & maskOf(prefix)) >>> 0;
  if (strict && base !== address) {
    throw new Error(`${text} has host bits set; did you mean ${formatIpv4(base)}/${prefix}?`);
  }
  return { base, prefix, address };
}

/** Like parseCidr, but undefined instead of an error (validators that word their own message). */
export function tryParseCidr(text: string, strict = true): (Cidr & { address: number }) | undefined {
  try {
    return parseCidr(text, strict);
  } catch {
    return undefined;
  }
}

/** Is `text` "a.b.c.d/p" with a valid address and prefix (host bits allowed)? */
export function isIpv4Cidr(text: string): boolean {
  return tryParseCidr(text, false) !== undefined && text.trim() === text;
}

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function contains(c: Cidr, ip: number): boolean {
  return (ip & maskOf(c.prefix)) >>> 0 === c.base;
}

/** Order of two dotted quads by their numbers (sorting for display); text that is not an address sorts first. */
export function compareIpv4(a: string, b: string): number {
  return (isIpv4(a) ? parseIpv4(a) : -1) - (isIpv4(b) ? parseIpv4(b) : -1);
}
