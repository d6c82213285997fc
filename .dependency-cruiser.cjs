/**
 * The import rules `npm run lint` enforces with dependency-cruiser: no import cycle, and no import
 * that points up a layer. A module may import its own layer and the layers below it (inside a layer,
 * as long as no cycle forms). Type-only imports count: a type is a dependency too.
 * docs/architecture.md describes the layers and what each owns.
 */

/** Bottom to top. `paths` are regular expressions on paths from the repository root. */
const LAYERS = [
  { name: 'domain', paths: ['^src/domain/'] },
  { name: 'utilities', paths: ['^src/(crypto|logging|telemetry|i18n)/', '^src/logger[.]ts$'] },
  { name: 'db', paths: ['^src/db/', '^migrations/'] },
  { name: 'providers', paths: ['^src/providers/'] },
  { name: 'config', paths: ['^src/config[.]ts$'] },
  { name: 'throttle-queue', paths: ['^src/(throttle|queue)/'] },
  { name: 'use-cases', paths: ['^src/(import|jobs|report|notify)/'] },
  { name: 'interfaces', paths: ['^src/(http|demo|dev)/', '^sandbox/'] },
  { name: 'composition-root', paths: ['^src/(app|cli)[.]ts$', '^src/(app|cli)/'] },
]

const anyOf = (paths) => paths.join('|')

const layerRules = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${layer.name}`,
  comment: `${layer.name} may import only ${LAYERS.slice(0, i + 1)
    .map((l) => l.name)
    .join(', ')}; ${LAYERS.slice(i + 1)
    .map((l) => l.name)
    .join(', ')} sit above it`,
  severity: 'error',
  from: { path: anyOf(layer.paths) },
  to: { path: anyOf(LAYERS.slice(i + 1).flatMap((l) => l.paths)) },
}))

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle: its modules can only be understood, tested and changed together.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'not-in-any-layer',
      comment: 'Every module of src/ belongs to a layer of .dependency-cruiser.cjs: add a new folder to the table.',
      severity: 'error',
      from: { path: '^src/', pathNot: anyOf(LAYERS.flatMap((l) => l.paths)) },
      to: {},
    },
    {
      name: 'sandbox-is-not-the-adapters',
      comment: 'The provider and message-gateway simulators share no code with the adapters, so a contract test cannot pass on a misreading both share.',
      severity: 'error',
      from: { path: '^sandbox/' },
      to: { path: '^src/(providers|notify)/' },
    },
    {
      name: 'no-static-sandbox-import',
      comment: 'The production build carries no sandbox: src/ reaches it only through src/dev/load-sandbox.ts, at run time.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^sandbox/' },
    },
    {
      name: 'no-test-code',
      comment: 'Application code imports no tests, benchmarks or scripts.',
      severity: 'error',
      from: { path: '^(src|migrations|sandbox)/' },
      to: { path: '^(test|bench|bin)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
}
