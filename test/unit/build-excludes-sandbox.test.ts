import { describe, expect, it } from 'vitest'
import { join, resolve, sep } from 'node:path'
import ts from 'typescript'

const ROOT = resolve(import.meta.dirname, '..', '..')

describe('the production build (tsconfig.build.json)', () => {
  // Whatever src/ imports, statically or as a type, is compiled into dist/: the sandbox must stay
  // reachable only through the loader's computed specifier.
  it('compiles nothing from sandbox/, and the loader is in it', () => {
    const file = join(ROOT, 'tsconfig.build.json')
    const read = ts.readConfigFile(file, (p) => ts.sys.readFile(p))
    expect(read.error).toBeUndefined()
    const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, undefined, file)
    expect(parsed.errors).toEqual([])
    const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options })
    const ours = program
      .getSourceFiles()
      .map((f) => resolve(f.fileName))
      .filter((f) => f.startsWith(ROOT + sep) && !f.includes(`${sep}node_modules${sep}`))
    expect(ours.filter((f) => f.startsWith(join(ROOT, 'sandbox') + sep))).toEqual([])
    expect(ours).toContain(join(ROOT, 'src', 'dev', 'load-sandbox.ts'))
    expect(ours).toContain(join(ROOT, 'src', 'cli.ts'))
  })
})
