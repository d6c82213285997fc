#!/usr/bin/env node
// Runs the compiled CLI when present (npm run build), else the TypeScript source through tsx, which
// is a development dependency: an install without dev dependencies must be built first.
import { existsSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { dirname, join } from 'node:path'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const compiled = join(root, 'dist', 'src', 'cli.js')
if (existsSync(compiled)) {
  await import(pathToFileURL(compiled).href)
} else {
  let register
  try {
    ;({ register } = await import('tsx/esm/api'))
  } catch {
    process.stderr.write('cash-receipts: dist/ is missing and tsx is not installed; run `npm run build` (or install the dev dependencies)\n')
    process.exit(1)
  }
  register()
  await import(pathToFileURL(join(root, 'src', 'cli.ts')).href)
}
