/**
 * Dependencies run one way (docs/ARCHITECTURE.md): no folder of src imports a folder that
 * imports it, and src/net (the ground floor) imports nothing outside itself. The imports
 * are read from the sources with the TypeScript parser, so a moved file cannot slip by.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const REPO = join(__dirname, '..', '..');
const SRC = join(REPO, 'src');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Relative module specifiers a file imports or re-exports, `import('...')` types included. */
function relativeImports(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined) {
      if (ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const lit = node.argument.literal;
      if (ts.isStringLiteral(lit)) found.push(lit.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      found.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found.filter((m) => m.startsWith('.'));
}

/** "api" for src/api/server.ts, "daemon.ts" for src/daemon.ts: the unit a cycle is counted between. */
function folderOf(pathFromSrc: string): string {
  return pathFromSrc.split(sep)[0] ?? pathFromSrc;
}

interface ImportEdge {
  from: string;
  to: string;
  file: string;
  specifier: string;
}

function importEdges(): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of sourceFiles(SRC)) {
    const fromRel = relative(SRC, file);
    for (const specifier of relativeImports(file)) {
      const target = normalize(join(dirname(file), specifier));
      const toRel = relative(SRC, target);
      edges.push({
        from: folderOf(fromRel),
        to: toRel.startsWith('..') ? toRel : folderOf(toRel),
        file: fromRel,
        specifier,
      });
    }
  }
  return edges;
}

/** Every folder cycle, each as the folders around it ("api -> router -> api"). */
function folderCycles(edges: ImportEdge[]): string[] {
  const graph = new Map<string, Set<string>>();
  for (const e of edges) {
    if (e.from === e.to || e.to.startsWith('..')) continue;
    let out = graph.get(e.from);
    if (out === undefined) graph.set(e.from, (out = new Set()));
    out.add(e.to);
  }
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const s = state.get(next);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next].join(' -> '));
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

describe('architecture', () => {
  const edges = importEdges();

  it('reads the imports of the tree (the check sees the real folders)', () => {
    const folders = new Set(edges.map((e) => e.from));
    for (const f of ['api', 'router', 'datapath', 'net', 'endpoint', 'diagnostics']) expect(folders).toContain(f);
    expect(edges.some((e) => e.from === 'datapath' && e.to === 'router')).toBe(true);
  });

  it('has no folder import cycle', () => {
    expect(folderCycles(edges)).toEqual([]);
  });

  it('finds a cycle when there is one (the check itself can fail)', () => {
    const planted: ImportEdge = { from: 'router', to: 'datapath', file: 'router/x.ts', specifier: '../datapath/x' };
    expect(folderCycles([...edges, planted]).length).toBeGreaterThan(0);
  });

  it('src/net imports nothing outside src/net', () => {
    const outside = edges.filter((e) => e.from === 'net' && e.to !== 'net').map((e) => `${e.file}: ${e.specifier}`);
    expect(outside).toEqual([]);
  });

  it('the router never imports a data path', () => {
    expect(edges.filter((e) => e.from === 'router' && e.to === 'datapath').map((e) => e.file)).toEqual([]);
  });
});

/** Longest function a source file may hold (docs/ARCHITECTURE.md); a longer one is split along its seams. */
const MAX_FUNCTION_LINES = 100;

/** Functions of `text` longer than `max` lines, as "file:line name (n lines)". */
function longFunctions(file: string, text: string, max: number): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const first = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const lines = sf.getLineAndCharacterOfPosition(node.end).line - first + 1;
      const name = node.name?.getText(sf) ?? '(anonymous)';
      if (lines > max) found.push(`${relative(REPO, file)}:${first + 1} ${name} (${lines} lines)`);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

describe('function length', () => {
  it(`no function in src is over ${MAX_FUNCTION_LINES} lines`, () => {
    const long = sourceFiles(SRC).flatMap((f) => longFunctions(f, readFileSync(f, 'utf8'), MAX_FUNCTION_LINES));
    expect(long).toEqual([]);
  });

  it('finds a long function when there is one (the check itself can fail)', () => {
    const body = Array.from({ length: MAX_FUNCTION_LINES }, (_, i) => `  const v${i} = ${i};`).join('\n');
    const long = longFunctions(join(SRC, 'planted.ts'), `export function planted(): void {\n${body}\n}\n`, 100);
    expect(long).toEqual([`src/planted.ts:1 planted (${MAX_FUNCTION_LINES + 2} lines)`]);
  });
});
