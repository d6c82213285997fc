import { describe, expect, it } from 'vitest'
import { join, resolve, sep } from 'node:path'
import ts from 'typescript'

const ROOT = resolve(import.meta.dirname, '..', '..')

describe('the production build (tsconfig.build.json)', () => {
  // Whatever src/ imports, statically or as a type, is compiled into dist/: the sandbox must stay
  // reachable only through the loader's computed specifier.
  it('compiles nothing from sandbox/, and the loader is in it', () => {
    const file = join(ROOT, 'tsconfig.build.json')
    const config = ts.readConfigFile(file, (p) => ts.sys.readFile(p))
    expect(config.error).toBeUndefined()
    const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT, undefined, file)
    expect(parsed.errors).toEqual([])
    // Only our own files matter: declarations under node_modules (lib, @types, packages) are read as
    // empty, which keeps module resolution whole but skips parsing them (TypeScript's paths use /).
    const host = ts.createCompilerHost(parsed.options)
    const read = host.getSourceFile.bind(host)
    host.getSourceFile = (fileName, language, onError, shouldCreate) =>
      fileName.includes('/node_modules/') ? ts.createSourceFile(fileName, '', language) : read(fileName, language, onError, shouldCreate)
    const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options, host })
    const ours = program
      .getSourceFiles()
      .map((f) => resolve(f.fileName))
      .filter((f) => f.startsWith(ROOT + sep) && !f.includes(`${sep}node_modules${sep}`))
    expect(ours.filter((f) => f.startsWith(join(ROOT, 'sandbox') + sep))).toEqual([])
    expect(ours).toContain(join(ROOT, 'src', 'dev', 'load-sandbox.ts'))
    expect(ours).toContain(join(ROOT, 'src', 'cli.ts'))
  })
})
