/**
 * A 200 MB import is streamed with bounded memory: a bad row at the very end still rejects the whole
 * file (all-or-nothing), names its line, writes nothing, and the importing process stays small.
 */
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { ROOT } from '../helpers/pipeline.ts'
import { IMPORT_HEADER } from '../../src/demo/generate.ts'

let env: TestEnv
let dir: string

beforeAll(async () => {
  env = await createTestEnv()
  dir = await mkdtemp(join(tmpdir(), 'crt-large-'))
})
afterAll(async () => {
  await env?.close()
  await rm(dir, { recursive: true, force: true })
})

async function writeLargeCsv(file: string, targetBytes: number): Promise<number> {
  const out = createWriteStream(file)
  out.write(IMPORT_HEADER.join(',') + '\n')
  let bytes = 0
  let n = 0
  while (bytes < targetBytes) {
    let chunk = ''
    for (let i = 0; i < 5_000; i++, n++) {
      const phone = `010${String(10_000_000 + (n % 89_999_999)).padStart(8, '0')}`
      chunk += `BIG-${n},m-clinic,nts,,ORD-BIG-${n},수강료 11월분,bank_transfer,${110_000 + (n % 1000)},0,0,2026-11-20T10:${String(n % 60).padStart(2, '0')}:00+09:00,${phone},,deduction,홍길동,,,completed,0\n`
    }
    bytes += Buffer.byteLength(chunk)
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()))
  }
  out.write(`BIG-LAST,m-clinic,nts,,ORD-BIG-LAST,x,bank_transfer,-5,0,0,2026-11-20T10:00:00+09:00,,,,,,,completed,0\n`)
  await new Promise<void>((r) => out.end(() => r()))
  return n + 2 // header + rows + the bad last row → its line number
}

it('streams a 200 MB file with bounded memory and rejects it whole for one bad last row', async () => {
  const file = join(dir, 'big.csv')
  const badLine = await writeLargeCsv(file, 200 * 1024 * 1024)
  expect((await stat(file)).size).toBeGreaterThan(200 * 1024 * 1024)

  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), 'import', file, '--json'], {
    cwd: ROOT,
    env: { ...process.env, ...env.env() },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.resume()
  let peakKb = 0
  const sampler = setInterval(async () => {
    try {
      const s = await import('node:fs/promises').then((fs) => fs.readFile(`/proc/${child.pid}/status`, 'utf8'))
      peakKb = Math.max(peakKb, Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0))
    } catch {
      // exited
    }
  }, 200)
  const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? -1)))
  clearInterval(sampler)

  expect(code).toBe(2)
  const result = JSON.parse(stdout)
  expect(result.written).toBe(false)
  expect(result.rows).toBe(badLine - 1)
  expect(result.errors).toEqual([expect.objectContaining({ line: badLine, field: 'amount' })])
  const n = await env.app
    .db()
    .selectFrom('cash_transactions')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow()
  expect(Number(n.n)).toBe(0)
  // Bounded: far below the file size, whatever the number of rows.
  expect(peakKb / 1024).toBeLessThan(350)
}, 600_000)
