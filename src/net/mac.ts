/**
 * MAC addresses as 48-bit numbers (exact in a double), read from and written to frames
 * without allocating, and parsed from and formatted to "aa:bb:cc:dd:ee:ff" text once.
 */

const TWO_32 = 0x1_0000_0000;

const MAC_TEXT = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Is `text` six colon-separated hex bytes ("02:42:AC:11:00:02" too)? */
export function isMacText(text: string): boolean {
  return MAC_TEXT.test(text);
}

/** "02:42:ac:11:00:02" -> 48-bit number; undefined when `text` is not a MAC address. */
export function parseMac(text: string): number | undefined {
  return isMacText(text) ? parseInt(text.replace(/:/g, ''), 16) : undefined;
}

/** Six bytes big-endian at offset -> 48-bit number. No allocation. */
export function readMac(buf: Buffer, offset: number): number {
  if (offset < 0 || offset + 6 > buf.length) throw new RangeError(`readMac: offset ${offset} outside ${buf.length}`);
  return (
    (buf[offset]! * 0x100 + buf[offset + 1]!) * TWO_32 +
    ((buf[offset + 2]! << 24) >>> 0) +
    (buf[offset + 3]! << 16) +
    (buf[offset + 4]! << 8) +
    buf[offset + 5]!
  );
}

/** Write a 48-bit MAC as six bytes big-endian at offset. */
export function writeMac(buf: Buffer, offset: number, mac: number): void {
  if (offset < 0 || offset + 6 > buf.length) throw new RangeError(`writeMac: offset ${offset} outside ${buf.length}`);
  const hi = Math.floor(mac / TWO_32);
  const lo = mac >>> 0;
  buf[offset] = hi >>> 8;
  buf[offset + 1] = hi & 0xff;
  buf[offset + 2] = lo >>> 24;
  buf[offset + 3] = (lo >>> 16) & 0xff;
  buf[offset + 4] = (lo >>> 8) & 0xff;
  buf[offset + 5] = lo & 0xff;
}

/** "02:42:ac:11:00:02" */
export function formatMac(mac: number): string {
  const hex = mac.toString(16).padStart(12, '0');
  return `${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}:${hex.slice(6, 8)}:${hex.slice(8, 10)}:${hex.slice(10, 12)}`;
}

/** The I/G bit (lowest bit of the first byte): multicast, broadcast included. */
export function isMulticastMac(mac: number): boolean {
  return ((mac / 0x100_0000_0000) & 1) === 1;
}
