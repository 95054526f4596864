/**
 * A peer's name: 48 random bits, stable for the life of a host (persisted in the state
 * dir), written like a MAC address ("7e:21:0a:b4:19:c2"). Held as a plain number so it is
 * a cheap Map key on the frame path (2^48 < Number.MAX_SAFE_INTEGER).
 */
export type PeerName = number;

/** The all-zero name marks "no peer" / broadcast in wire formats. */
export const NO_PEER: PeerName = 0;

const NAME_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

export function isPeerNameText(text: string): boolean {
  return NAME_RE.test(text.toLowerCase());
}

export function parsePeerName(text: string): PeerName {
  const t = text.toLowerCase();
  if (!NAME_RE.test(t)) {
    throw new Error(`invalid peer name ${JSON.stringify(text)}: expected six hex bytes like 7e:21:0a:b4:19:c2`);
  }
  return parseInt(t.replace(/:/g, ''), 16);
}

/**
 * Why a name cannot be a peer's, undefined when it can: all-zero reads as "no peer" in
 * the wire formats, and a group (broadcast or multicast) address is not one host.
 */
export function peerNameProblem(name: PeerName): string | undefined {
  if (name === NO_PEER) return 'the all-zero name means "no peer" on the wire';
  if (name === 0xffffffffffff) return 'it is the broadcast address';
  if ((Math.floor(name / 2 ** 40) & 1) === 1) return 'it is a multicast address (the first byte is odd)';
  return undefined;
}

export function formatPeerName(name: PeerName): string {
  const hex = name.toString(16).padStart(12, '0');
  return hex.match(/../g)!.join(':');
}

export function randomPeerName(random: (n: number) => Buffer): PeerName {
  const b = random(6);
  // Locally administered, unicast, like a MAC address: never all-zero.
  b[0] = (b[0]! & 0xfe) | 0x02;
  return b.readUIntBE(0, 6);
}

export function writePeerName(buf: Buffer, offset: number, name: PeerName): void {
  buf.writeUIntBE(name, offset, 6);
}

export function readPeerName(buf: Buffer, offset: number): PeerName {
  return buf.readUIntBE(offset, 6);
}
