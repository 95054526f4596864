/**
 * `weavets policy apply|ls|show|rm|drops|test|status` (docs/POLICY.md). Files are parsed
 * and validated here first, so a mistake is reported with the file's name and the
 * field's path before anything reaches the daemon; the daemon validates again (it alone
 * knows which networks exist) and stores all or nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import type { ApplyResult as PolicyApplyResult } from '../policy/book';
import type { PolicyDrop } from '../policy/drops';
import type { StoredPolicy } from '../policy/model';
import type { PolicyEndpoint } from '../policy/nft';
import type { PolicyStatus } from '../policy/service';
import { DEFAULT_NETWORK } from '../config';
import { WeavetsError } from '../errors';
import { formatSelector } from '../policy/labels';
import { parsePolicies, parseSelector, validatePolicy, type Policy } from '../policy/model';
import { parseExpectationFile, runExpectations, resolveOffline, type EndpointRef } from '../policy/expectations';
import type { EvalEndpoint } from '../policy/evaluate';
import { clientFor, stateDirOf } from './context';
import { ExitStatus, UsageError, formatJson, formatTable, out } from './output';

function readFileOrFail(file: string, flag: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
      { cause: err },
    );
  }
}

export function formatPolicies(list: StoredPolicy[]): string {
  return formatTable(
    ['NAME', 'NETWORK', 'VERSION', 'MODE', 'SELECTOR', 'UPDATED'],
    list.map((p) => {
      const doc = p.document;
      let selector = '?';
      try {
        selector = formatSelector(parseSelector(doc['selector'], 'selector'));
      } catch {
        // shown as "?"; the daemon validated it when it was applied
      }
      return [
        p.name,
        p.network,
        String(p.version),
        typeof doc['mode'] === 'string' ? doc['mode'] : 'enforce',
        selector,
        p.updated,
      ];
    }),
  );
}

function end(e: PolicyDrop['from']): string {
  if (e.name === undefined) return e.address;
  return `${e.name} (${e.host ?? '?'}, ${e.address})`;
}

export function formatDrops(drops: PolicyDrop[]): string {
  return formatTable(
    ['TIME', 'FROM', 'TO', 'PROTO/PORT', 'POLICY'],
    drops.map((d) => [
      d.time,
      end(d.from),
      end(d.to),
      d.port === undefined ? d.protocol : `${d.protocol}/${d.port}`,
      `${d.policy}${d.direction === 'spoof' ? ` (${d.device ?? ''})` : ` (${d.direction})`}${d.mode === 'audit' ? ' audit: not dropped' : ''}`,
    ]),
  );
}

export function registerPolicy(program: Command): void {
  const policy = program
    .command('policy')
    .description('policies between workloads: who may talk to whom (docs/POLICY.md)');

  policy
    .command('apply')
    .description('validate and store the policies of a JSON or YAML file, cluster-wide, all or none')
    .requiredOption('-f, --file <file>', 'policy file (JSON object or list, or YAML documents)')
    .action(async (flags: { file: string }, cmd: Command) => {
      const text = readFileOrFail(flags.file, '-f');
      const source = path.basename(flags.file);
      const { documents } = parsePolicies(text, source, { defaultNetwork: DEFAULT_NETWORK });
      let res: PolicyApplyResult;
      try {
        res = await clientFor(stateDirOf(cmd)).post<PolicyApplyResult>('/policy/apply', { documents });
      } catch (err) {
        if (err instanceof WeavetsError && err.code === 'EWEAVETS_POLICY_INVALID')
          throw new WeavetsError(err.code, `${source}: ${err.message}`, { cause: err });
        throw err;
      }
      for (const p of res.policies)
        out(`${p.name}: version ${p.version}${p.changed ? '' : ' (unchanged)'}, generation ${res.generation}`);
    });

  policy
    .command('ls')
    .description('list the policies in force')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const list = await clientFor(stateDirOf(cmd)).get<StoredPolicy[]>('/policy');
      out(flags.json ? formatJson(list) : formatPolicies(list));
    });

  policy
    .command('show')
    .description('print a policy as applied (JSON), with its version')
    .argument('<name>', 'policy name')
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const p = await clientFor(stateDirOf(cmd)).post<StoredPolicy>('/policy/show', { name });
      out(formatJson(p));
    });

  policy
    .command('rm')
    .description('remove policies, cluster-wide, all or none')
    .argument('<name...>', 'policy names')
    .action(async (names: string[], _flags: unknown, cmd: Command) => {
      const r = await clientFor(stateDirOf(cmd)).post<{ generation: number }>('/policy/rm', { names });
      for (const name of names) out(`${name}: removed, generation ${r.generation}`);
    });

  policy
    .command('drops')
    .description('packets this host refused (or, in audit mode, would have), newest last')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const drops = await clientFor(stateDirOf(cmd)).get<PolicyDrop[]>('/policy/drops');
      out(flags.json ? formatJson(drops) : formatDrops(drops));
    });

  policy
    .command('status')
    .description("this host's enforcement: generation seen and in force, endpoints, errors")
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const s = await clientFor(stateDirOf(cmd)).get<PolicyStatus>('/policy/status');
      if (flags.json) {
        out(formatJson(s));
        return;
      }
      out(formatPolicyStatus(s));
    });

  policy
    .command('test')
    .description('check expectations against policies (files or applied names) and live labels; exit 1 on any mismatch')
    .requiredOption('-f, --file <file>', 'expectations file (JSON)')
    .action((flags: { file: string }, cmd: Command) => runPolicyTest(flags.file, stateDirOf(cmd)));
}

/** `policy test -f FILE`: every expectation against the policies it names and the live labels; exit 1 on a miss. */
async function runPolicyTest(fileArg: string, stateDir: string): Promise<void> {
  const text = readFileOrFail(fileArg, '-f');
  const file = parseExpectationFile(text, path.basename(fileArg));
  const network = file.network ?? DEFAULT_NETWORK;
  const dir = path.dirname(path.resolve(fileArg));
  const policies: Policy[] = [];
  let live: PolicyEndpoint[] | undefined;
  const client = (): ReturnType<typeof clientFor> => clientFor(stateDir);
  for (const ref of file.policies) {
    const candidate = path.resolve(dir, ref);
    if (fs.existsSync(candidate)) {
      policies.push(
        ...parsePolicies(readFileOrFail(candidate, 'policies:'), ref, { defaultNetwork: DEFAULT_NETWORK }).policies,
      );
    } else if (/^[a-z0-9-]+$/.test(ref)) {
      const stored = await client().post<StoredPolicy>('/policy/show', { name: ref });
      policies.push(validatePolicy(stored.document, { defaultNetwork: stored.network }));
    } else {
      throw new UsageError(`policies: ${ref}: no such file (nor a policy name)`);
    }
  }
  const needsLive = file.tests.some(
    (t) => 'name' in t.from || 'name' in t.to || 'address' in t.from || 'address' in t.to,
  );
  if (needsLive) {
    try {
      live = await client().get<PolicyEndpoint[]>('/policy/endpoints');
    } catch (err) {
      if (file.tests.some((t) => 'name' in t.from || 'name' in t.to)) throw err;
    }
  }
  const resolve = (ref: EndpointRef): EvalEndpoint => {
    if ('name' in ref) {
      const ep = live?.find((e) => e.network === network && (e.name === ref.name || e.id === ref.name));
      if (!ep) throw new UsageError(`no endpoint named ${ref.name} on network ${network} (see weavets ps)`);
      return { labels: ep.labels, ip: ep.ip };
    }
    if ('address' in ref) {
      const ep = live?.find((e) => e.network === network && e.ip === ref.address);
      if (ep) return { labels: ep.labels, ip: ep.ip };
    }
    return resolveOffline(ref);
  };
  const results = runExpectations(
    file,
    policies.filter((p) => p.network === network),
    resolve,
  );
  for (const r of results) out(r.line);
  const failed = results.filter((r) => !r.pass).length;
  out(`${results.length - failed} of ${results.length} expectations hold`);
  if (failed > 0) throw new ExitStatus(1);
}

function formatPolicyStatus(s: PolicyStatus): string {
  return [
    `generation: ${s.generation} (in force: ${s.enforcedGeneration < 0 ? 'none yet' : s.enforcedGeneration}${s.enforcedAt ? `, since ${s.enforcedAt}` : ''})`,
    `policies: ${s.policies}, endpoints: ${s.endpoints}, drops read: ${s.drops}${s.dryRun ? ', dry run: nothing is dropped' : ''}`,
    `stateful bridges: ${s.statefulBridges.join(', ') || 'none'}`,
    ...(s.lastEnforceMs
      ? [
          `last enforcement (${s.lastEnforceMs.mode}): compile ${s.lastEnforceMs.compile} ms, apply ${s.lastEnforceMs.apply} ms (nft ${s.lastEnforceMs.nft} ms, bridges ${s.lastEnforceMs.bridges} ms)`,
        ]
      : []),
    ...(s.error ? [`error: ${s.error}`] : []),
  ].join('\n');
}
