// `npm run lint`: typescript-eslint with type information over src, test, bench and
// scripts. Rules beyond the recommended type-checked set are the ones this code has
// been bitten by: promises nobody awaits, and errors thrown without their cause.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'native/build/', 'node_modules/', 'test-output/', '**/*.mjs', '**/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        project: ['./tsconfig.json', './test/tsconfig.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      'preserve-caught-error': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      // An async method that implements an async interface (a store's get, a fake
      // in a test) need not await anything; the alternative is Promise.resolve by hand.
      '@typescript-eslint/require-await': 'off',
      // Decoders compare a raw byte from the wire against enum members: that is how a
      // byte becomes a kind, after which the type is the enum.
      '@typescript-eslint/no-unsafe-enum-comparison': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Tests and benches read JSON printed by ip, docker, etcdctl and the daemon, and
    // assert on it; typing every such read adds lines and catches nothing the
    // assertion beside it does not.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
