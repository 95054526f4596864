/**
 * IPv4 address and CIDR arithmetic on plain numbers (unsigned 32-bit, host order).
 * Pure and allocation-light: the allocator and validators share these.
 */
export interface Cidr {
  /** Network address as a number. */
  base: number;
  prefix: number;
}

export function parseIpv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`invalid IPv4 address ${JSON.stringify(text)}`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new Error(`invalid IPv4 address ${JSON.stringify(text)}`);
    n = n * 256 + Number(p);
  }
  return n;
}

export function formatIpv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parse "a.b.c.d/p". With `strict`, host bits must be zero (a network, not an address). */
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

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function contains(c: Cidr, ip: number): boolean {
  return (ip & maskOf(c.prefix)) >>> 0 === c.base;
}
