/**
 * The libnetwork remote plugin protocol as data: method names, request parsing and the
 * error shape. Pure (no I/O), so it is unit-tested without Docker.
 *
 * Docker POSTs `/<Interface>.<Method>` with a JSON body, often with no Content-Type and,
 * for some calls, no body at all. Failures are answered with HTTP 500 and a body holding
 * the message twice: `Err` (read by the network driver proxy and by Docker's plugin
 * client for any non-200 answer) and `Error` (read by the IPAM proxy). Unknown methods: 404.
 */
import { WeavetsError } from '../errors';
import { FieldReader, parseJsonObject, type BodyErrors, type JsonObject } from '../json-fields';

export const NETWORK_DRIVER = 'NetworkDriver';
export const IPAM_DRIVER = 'IpamDriver';
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

/** Options keys Docker uses. */
export const OPT_GENERIC = 'com.docker.network.generic';
export const OPT_PORTMAP = 'com.docker.network.portmap';
export const OPT_EXPOSED = 'com.docker.network.endpoint.exposedports';
export const OPT_ADDRESS_TYPE = 'RequestAddressType';
export const ADDRESS_TYPE_GATEWAY = 'com.docker.network.gateway';
export const OPT_MAC = 'com.docker.network.endpoint.macaddress';

/** `-o` options weavets understands on `docker network create -d weavets`. */
export const OPT_SEGMENT = 'weavets.segment';

export type Body = JsonObject;

export interface PluginAnswer {
  status: number;
  body: unknown;
}

export class PluginError extends Error {
  constructor(
    readonly status: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The one place errors become the plugin wire format. */
export function errorAnswer(err: unknown): PluginAnswer {
  const message = err instanceof Error ? err.message : String(err);
  let status = 500;
  if (err instanceof PluginError) status = err.status;
  return { status, body: { Err: message, Error: message } };
}

const BODY_ERRORS: BodyErrors = {
  emptyAs: {},
  nullAs: {},
  malformed: (cause) => new PluginError(400, `request body is not JSON: ${cause.message}`, { cause }),
  notObject: () => new PluginError(400, 'request body must be a JSON object'),
};

/** Parse a request body: empty (or null) means {}; anything but a JSON object is refused. */
export function parseBody(text: string): Body {
  return parseJsonObject(text, BODY_ERRORS);
}

/** Fields of a request; errors are 400 PluginErrors naming the field. */
const fields = new FieldReader({
  name: (field) => `field ${field}`,
  error: (message) => new PluginError(400, message),
});

export function reqString(body: Body, field: string): string {
  return fields.reqString(body, field);
}

/** Absent, null and "" (Docker's zero value) are all "not given". */
export function optString(body: Body, field: string): string | undefined {
  const v = fields.optString(body, field);
  return v === '' ? undefined : v;
}

export function optObject(body: Body, field: string): Body {
  return fields.optObject(body, field) ?? {};
}

export function optArray(body: Body, field: string): unknown[] {
  return fields.optArray(body, field) ?? [];
}

/** A Docker port binding (types.PortBinding) as Docker sends it. */
export interface PortBinding {
  proto: 'tcp' | 'udp' | 'sctp';
  /** Container port. */
  port: number;
  hostIp: string;
  hostPort: number;
  hostPortEnd: number;
}

const PROTOS: Record<number, PortBinding['proto']> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

function port(v: unknown, what: string, allowZero: boolean): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < (allowZero ? 0 : 1) || v > 65535) {
    throw new PluginError(400, `${what} must be a port number, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** The `com.docker.network.portmap` option of ProgramExternalConnectivity. */
export function parsePortBindings(options: Body): PortBinding[] {
  const raw = options[OPT_PORTMAP];
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new PluginError(400, `option ${OPT_PORTMAP} must be an array`);
  return raw.map((b, i) => {
    if (typeof b !== 'object' || b === null) throw new PluginError(400, `${OPT_PORTMAP}[${i}] must be an object`);
    const o = b as Body;
    const proto = PROTOS[o['Proto'] as number];
    if (proto === undefined)
      throw new PluginError(
        400,
        `${OPT_PORTMAP}[${i}].Proto ${JSON.stringify(o['Proto'])} is not 6 (tcp), 17 (udp) or 132 (sctp)`,
      );
    const hostPort = port(o['HostPort'] ?? 0, `${OPT_PORTMAP}[${i}].HostPort`, true);
    const hostPortEnd = port(o['HostPortEnd'] ?? 0, `${OPT_PORTMAP}[${i}].HostPortEnd`, true);
    return {
      proto,
      port: port(o['Port'], `${OPT_PORTMAP}[${i}].Port`, false),
      hostIp: typeof o['HostIP'] === 'string' ? o['HostIP'] : '',
      hostPort,
      hostPortEnd: hostPortEnd === 0 ? hostPort : hostPortEnd,
    };
  });
}

/** Map a daemon error to an HTTP status for the plugin answer (the message is what Docker shows). */
export function pluginErrorOf(err: unknown): PluginError {
  if (err instanceof PluginError) return err;
  if (err instanceof WeavetsError) {
    const status = err.code === 'EWEAVETS_BAD_REQUEST' ? 400 : err.code === 'EWEAVETS_NOT_FOUND' ? 404 : 500;
    // 404 means "no such method" to Docker's plugin client; never use it for a missing thing.
    return new PluginError(status === 404 ? 500 : status, `weavets: ${err.message}`, { cause: err });
  }
  return new PluginError(500, `weavets: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
