// SPDX-License-Identifier: Apache-2.0
// ESLint (flat config): typescript-eslint's recommended rules on every TypeScript file, with
// formatting left to Prettier (eslint-config-prettier). The test command runs it
// (`npm run lint`); import cycles and layer rules are checked by
// test/unit/architecture.test.ts, which reads the same sources.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['build/**', 'node_modules/**', 'packaging/out/**', '**/*.bundle.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    languageOptions: { globals: { ...globals.node }, ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // The load balancer reads and writes kernel structs only through their BTF-checked
    // StructSpecs (lb/wire.ts, with the bpf/layout.ts accessors): a Buffer read or write at a
    // hand-written offset is how a mirror drifts from the C side without a test noticing.
    files: ['daemon/src/lb/**/*.ts'],
    rules: {
      'no-restricted-syntax': ['error', {
        selector: 'CallExpression[callee.property.name=/^(read|write)(Big)?U?Int(8|16|32|64)(LE|BE)?$/]',
        message: 'Read and write kernel structs through their StructSpec (bpf/layout.ts readUint, writeUint, readU64...), not at an offset written here.',
      }],
    },
  },
  {
    // GNOME Shell extensions (GNOME 43/44): GJS scripts, not modules; the shell calls their
    // top-level init() and provides imports, global and log.
    files: ['packaging/gnome-shell/**/*.js', 'test/fixtures/gnome-shell/**/*.js'],
    languageOptions: { sourceType: 'script', globals: { imports: 'readonly', global: 'readonly', log: 'readonly', logError: 'readonly' } },
    rules: { '@typescript-eslint/no-unused-vars': ['error', { varsIgnorePattern: '^(init|_)', argsIgnorePattern: '^_', caughtErrors: 'none' }] },
  },
  {
    // Tests read wire values of any shape (D-Bus variants unwrapped, JSON replies).
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
