/**
 * The import rules `npm run lint` enforces (dependency-cruiser with .dependency-cruiser.cjs): in a
 * small tree it reports an import cycle, an import that points up a layer (a type-only one too), a
 * module outside every layer and a sandbox that reaches into the adapters (provider or message
 * gateway), and it exits non-zero;
 * the real tree has none of them.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')
const DEPCRUISE = join(ROOT, 'node_modules/.bin/depcruise')
const CONFIG = join(ROOT, '.dependency-cruiser.cjs')

function cruise(cwd: string, dirs: string[], outputType: 'json' | 'err'): Promise<{ code: number; stdout: string }> {
  return new Promise((done, fail) => {
    execFile(DEPCRUISE, [...dirs, '--config', CONFIG, '--output-type', outputType], { cwd, maxBuffer: 64 * 1024 * 1024 }, (err, stdout) => {
      if (err && typeof err.code !== 'number') fail(err)
      else done({ code: err ? (err.code as number) : 0, stdout })
    })
  })
}

interface Violation {
  readonly rule: { readonly name: string }
  readonly from: string
  readonly to: string
  readonly cycle?: readonly { readonly name: string }[]
}

/** A rule and its edge; a cycle as its members, since which edge it is reported on is arbitrary. */
const describeViolation = (v: Violation): string =>
  v.cycle ? `${v.rule.name}: ${[...new Set([v.from, ...v.cycle.map((c) => c.name)])].sort().join(' ⇄ ')}` : `${v.rule.name}: ${v.from} → ${v.to}`

/** Each file's content; relative imports with .ts extensions, as in the project. */
const FIXTURE: Record<string, string> = {
  'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', allowImportingTsExtensions: true, noEmit: true } }),
  // A cycle inside one layer.
  'src/jobs/settle.ts': "import { issue } from './issue.ts'\nexport const settle = () => issue()\n",
  'src/jobs/issue.ts': "import { settle } from './settle.ts'\nimport { vatOf } from '../domain/money.ts'\nexport const issue = () => [settle, vatOf]\n",
  // The domain importing a provider module: up three layers.
  'src/domain/money.ts': "import type { Outcome } from '../providers/types.ts'\nexport const vatOf = (n: number): Outcome | number => n\n",
  'src/providers/types.ts': 'export type Outcome = { kind: string }\n',
  // db importing config, type-only: still up a layer.
  'src/db/ledger.ts': "import type { AppConfig } from '../config.ts'\nexport type Ledger = AppConfig\n",
  'src/config.ts': 'export interface AppConfig { readonly url: string }\n',
  // A folder the layer table does not know.
  'src/stray/helper.ts': "import { vatOf } from '../domain/money.ts'\nexport const helper = vatOf\n",
  // The simulator sharing code with an adapter.
  'sandbox/sim.ts': "import type { Outcome } from '../src/providers/types.ts'\nexport type Sim = Outcome\n",
  // The message-gateway simulator sharing the client's message type.
  'src/notify/gateway.ts': 'export interface GatewayMessage { readonly to: string }\n',
  'sandbox/gateway.ts': "import type { GatewayMessage } from '../src/notify/gateway.ts'\nexport type Simulated = GatewayMessage\n",
}

let dir: string

beforeAll(async () => {
  expect(existsSync(DEPCRUISE), `${DEPCRUISE} is missing: dependency-cruiser is a dev dependency (npm ci)`).toBe(true)
  dir = await mkdtemp(join(tmpdir(), 'crt-arch-'))
  for (const [path, content] of Object.entries(FIXTURE)) {
    await mkdir(dirname(join(dir, path)), { recursive: true })
    await writeFile(join(dir, path), content)
  }
})

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('the architecture lint', () => {
  it('reports a cycle, upward imports, a module outside the layers and a sandbox reaching into the adapters', async () => {
    const { stdout } = await cruise(dir, ['src', 'sandbox'], 'json')
    const violations = (JSON.parse(stdout) as { summary: { violations: Violation[] } }).summary.violations
    const found = violations.map(describeViolation).sort()
    expect(found).toEqual(
      [
        'layer-db: src/db/ledger.ts → src/config.ts',
        'layer-domain: src/domain/money.ts → src/providers/types.ts',
        'no-circular: src/jobs/issue.ts ⇄ src/jobs/settle.ts',
        'not-in-any-layer: src/stray/helper.ts → src/domain/money.ts',
        'sandbox-is-not-the-adapters: sandbox/sim.ts → src/providers/types.ts',
        'sandbox-is-not-the-adapters: sandbox/gateway.ts → src/notify/gateway.ts',
      ].sort(),
    )
  })

  it('fails the run (non-zero exit, as npm run lint does) and names the rule', async () => {
    const { code, stdout } = await cruise(dir, ['src', 'sandbox'], 'err')
    expect(code).toBeGreaterThan(0)
    expect(stdout).toMatch(/error no-circular: src\/jobs\//)
    expect(stdout).toMatch(/error layer-domain: src\/domain\/money\.ts → src\/providers\/types\.ts/)
  })

  it('finds nothing in the real tree, and npm run lint runs it over every source folder', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    expect(pkg.scripts.lint).toContain('depcruise src migrations sandbox --config .dependency-cruiser.cjs')
    const { code, stdout } = await cruise(ROOT, ['src', 'migrations', 'sandbox'], 'err')
    expect(stdout).toMatch(/no dependency violations found/)
    expect(code).toBe(0)
  })
})
