/**
 * What the DNS service reports (`weavets status dns --json`) and answers for
 * `weavets dns add|remove|lookup`. The DNS service produces these shapes.
 */

/** `weavets status dns --json` (GET /dns/status). */
export interface DnsStatus {
  enabled: boolean;
  /** "weavets.local." */
  domain: string;
  ttl: number;
  /** "addr:port" the server listens on (UDP and TCP). */
  listen: string[];
  /** Records of every host (one per host, name and address). */
  records: number;
  /** Distinct names. */
  names: number;
  /** Records this host publishes. */
  local: number;
  /** Every record this host serves, with the peer name of the host that publishes it. */
  entries: { name: string; ip: string; host: string }[];
  /** Nameservers queries outside the domain go to. */
  upstream: string[];
  resolvConf: string;
  queries: {
    answered: number;
    nxdomain: number;
    forwarded: number;
    servfail: number;
    formerr: number;
    dropped: number;
  };
}

export interface DnsRecordView {
  name: string;
  ip: string;
}

/** POST /dns/lookup {name}: a name's addresses, or an address's names. */
export type DnsLookupResult = { name: string; addresses: string[] } | { address: string; names: string[] };
