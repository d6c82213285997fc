/** The long-running commands' stop: first SIGINT/SIGTERM asks for a graceful stop, a second one exits. */
import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { listenForShutdown, type ShutdownSignal } from '../../src/cli/shutdown.ts'

function signals() {
  const emitter = new EventEmitter()
  const exits: number[] = []
  const source = {
    on: (s: ShutdownSignal, l: () => void) => emitter.on(s, l),
    off: (s: ShutdownSignal, l: () => void) => emitter.off(s, l),
    exit: (code: number) => void exits.push(code),
  }
  return { emitter, exits, source }
}

describe('listenForShutdown', () => {
  it('resolves with the first signal and does not exit on it', async () => {
    const { emitter, exits, source } = signals()
    const lines: string[] = []
    const shutdown = listenForShutdown({ source, stderr: { write: (s: string) => lines.push(s) > 0 } })
    emitter.emit('SIGTERM')
    expect(await shutdown.requested).toBe('SIGTERM')
    expect(exits).toEqual([])
    expect(lines).toEqual([])
  })

  it('exits at once on a second signal, with the code of that signal', async () => {
    const { emitter, exits, source } = signals()
    const lines: string[] = []
    const shutdown = listenForShutdown({ source, stderr: { write: (s: string) => lines.push(s) > 0 } })
    emitter.emit('SIGINT')
    expect(await shutdown.requested).toBe('SIGINT')
    emitter.emit('SIGINT')
    expect(exits).toEqual([130])
    emitter.emit('SIGTERM')
    expect(exits).toEqual([130, 143])
    expect(lines[0]).toMatch(/^SIGINT again: exiting/)
  })

  it('stops listening once disposed', () => {
    const { emitter, source } = signals()
    const shutdown = listenForShutdown({ source })
    expect(emitter.listenerCount('SIGINT')).toBe(1)
    expect(emitter.listenerCount('SIGTERM')).toBe(1)
    shutdown.dispose()
    expect(emitter.listenerCount('SIGINT')).toBe(0)
    expect(emitter.listenerCount('SIGTERM')).toBe(0)
  })
})
