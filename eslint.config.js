import js from '@eslint/js'
import tseslint from 'typescript-eslint'

// Node's globals for the plain JavaScript files (bin/, bench/*.mjs, the config files); TypeScript files
// get theirs from @types/node, and typescript-eslint turns no-undef off for them.
const nodeGlobals = {
  process: 'readonly',
  console: 'readonly',
  URL: 'readonly',
  setTimeout: 'readonly',
  clearTimeout: 'readonly',
}

export default tseslint.config(
  // What `npm run lint` (`eslint .`) leaves out: installed and generated files, the same as .gitignore.
  {
    ignores: ['node_modules/**', 'dist/**', 'coverage/**', 'reports/**', 'bench/results/**', '.tmp/**', '.scratch/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      curly: ['error', 'multi-line'],
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Read configuration in src/config.ts only.' }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: { globals: nodeGlobals },
    rules: { curly: ['error', 'multi-line'] },
  },
  {
    // .dependency-cruiser.cjs is CommonJS: dependency-cruiser loads it with require().
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } },
  },
  {
    // Migrations take Kysely<any> on purpose: old migrations must not break when the schema types change.
    files: ['migrations/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // Configuration lives in src/config.ts. Tests, benchmarks and the tools around them set up the
    // processes they start (TEST_DB_NS, BENCH_* and the children's environment), so they read and
    // write process.env themselves; every other rule holds for them as for src/.
    files: ['src/config.ts', 'test/**', 'bench/**', 'vitest.config.ts', 'vitest.heavy.config.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
)
