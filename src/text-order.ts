/**
 * One order for strings in every sort whose result is shown, rendered or compared: by
 * UTF-16 code unit, the same on every host.
 *
 * Not `localeCompare`: that collates by the locale the process finds in its environment,
 * so two hosts could list, render or canonicalise the same names in different orders, and
 * its first call pages in ICU's collation tables, ~2.5 MB of an idle daemon's resident
 * memory (bench/scale.ts).
 */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
