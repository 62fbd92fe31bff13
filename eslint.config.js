// One linter for the workspace: typescript-eslint, type-checked.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '.data/**', 'test-artifacts/**', 'scripts/*.mjs', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      'no-console': ['error', { allow: ['warn', 'error'] }],
      // Fastify handlers and hooks are async by convention, with or without an await.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Plain ES modules beside the TypeScript (a worker's loader shim): linted without type information.
    files: ['**/src/**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // Command-line tools talk to a person on stdout.
    files: ['**/src/cli/**', 'scripts/**', 'e2e/**', '**/test/**', '**/bench/**'],
    rules: { 'no-console': 'off' },
  },
);
