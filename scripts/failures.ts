/**
 * Prints the tests that failed in the vitest JSON reports named on the command line,
 * each with the first lines of its error, for scripts/test's summary: a CI log is often
 * read from its tail, and the tail should say what broke, not only which stage.
 */
import * as fs from 'node:fs';

interface AssertionResult {
  fullName?: string;
  title?: string;
  status?: string;
  failureMessages?: string[];
}
interface FileResult {
  name?: string;
  status?: string;
  message?: string;
  assertionResults?: AssertionResult[];
}

const ERROR_LINES = 6;

function firstLines(text: string): string {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(0, ERROR_LINES)
    .map((l) => `        ${l}`)
    .join('\n');
}

for (const report of process.argv.slice(2)) {
  let files: FileResult[];
  try {
    files = (JSON.parse(fs.readFileSync(report, 'utf8')) as { testResults?: FileResult[] }).testResults ?? [];
  } catch {
    continue; // the stage died before vitest wrote its report; its own output says why
  }
  for (const file of files) {
    const name = (file.name ?? '?').replace(`${process.cwd()}/`, '');
    const failed = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
    if (failed.length === 0 && file.status === 'failed') {
      console.log(`  FAIL ${name}\n${firstLines(file.message ?? 'the file failed before its tests ran')}`);
    }
    for (const t of failed) {
      console.log(
        `  FAIL ${name} > ${t.fullName ?? t.title ?? '?'}\n${firstLines((t.failureMessages ?? []).join('\n'))}`,
      );
    }
  }
}
