import { describe, expect, it } from 'vitest'
import { createCircuit } from '../../src/throttle/circuit.ts'
import { InFlight } from '../../src/throttle/throttle.ts'

describe('InFlight (calls in flight to one provider)', () => {
  it('caps the places and hands a freed place to a waiter', async () => {
    const f = new InFlight(2)
    const a = await f.tryTake(0)
    expect(a).toBeDefined()
    expect(await f.tryTake(0)).toBeDefined()
    expect(await f.tryTake(0)).toBeUndefined()
    const waiting = f.tryTake(1_000)
    f.release(a!)
    expect(await waiting).toBeDefined()
    expect(f.active).toBe(2)
  })

  it('sends refused callers away for as long as no place has come free, 100 ms to 5 s', async () => {
    let t = 1_000_000
    const f = new InFlight(2, { now: () => t })
    const a = await f.tryTake(0)
    t += 60_000 // a long idle stretch before the cap fills does not count as stuck
    await f.tryTake(0)
    expect(f.retryInMs()).toBe(100)
    expect(f.stuckFor(500)).toBe(false)
    t += 2_500 // a hanging provider: nothing freed for 2.5 s
    expect(f.retryInMs()).toBe(2_500)
    expect(f.stuckFor(500)).toBe(true)
    t += 10_000
    expect(f.retryInMs()).toBe(5_000)
    f.release(a!) // answering again: back to the short retry
    expect(f.retryInMs()).toBe(100)
    await f.tryTake(0)
    t += 30
    expect(f.retryInMs()).toBe(100)
  })

  it('starts at a window of 2, grows by one per quick answer up to the cap, halves on a failure', async () => {
    const t = 1_000_000
    const f = new InFlight(8, { now: () => t, slowCallMs: 3_000 })
    expect(f.cap()).toBe(2)
    for (let i = 0; i < 10; i++) f.release((await f.tryTake(0))!, 'ok')
    expect(f.cap()).toBe(8)
    f.release((await f.tryTake(0))!, 'failed')
    expect(f.cap()).toBe(4)
    f.release((await f.tryTake(0))!, 'failed')
    f.release((await f.tryTake(0))!, 'failed')
    f.release((await f.tryTake(0))!, 'failed')
    expect(f.cap()).toBe(1) // never below one: the next call is how it learns the provider is back
    f.release((await f.tryTake(0))!, 'none') // never sent: says nothing about the provider
    expect(f.cap()).toBe(1)
    f.release((await f.tryTake(0))!, 'ok')
    expect(f.cap()).toBe(2)
  })

  it('a call in flight longer than the slow-call time stops further calls until it ends', async () => {
    let t = 1_000_000
    const f = new InFlight(8, { now: () => t, slowCallMs: 3_000 })
    for (let i = 0; i < 10; i++) f.release((await f.tryTake(0))!, 'ok')
    const hanging = (await f.tryTake(0))!
    const quick = (await f.tryTake(0))!
    expect(f.cap()).toBe(8)
    t += 3_000
    expect(f.slowCalls()).toBe(2)
    expect(f.cap()).toBe(1)
    expect(await f.tryTake(0)).toBeUndefined()
    f.release(quick, 'ok') // slow, though answered: the window halves
    expect(f.slowCalls()).toBe(1)
    expect(await f.tryTake(0)).toBeUndefined()
    t += 12_000
    f.release(hanging, 'failed') // the read timeout
    expect(f.slowCalls()).toBe(0)
    expect(f.cap()).toBe(2)
  })
})

describe('circuit: unknown outcomes open it sooner', () => {
  it('opens after 2 unknown outcomes in a run where 5 other failures would be needed; an answer resets the run', async () => {
    const c = createCircuit({ failures: 5, unknownOutcomes: 2, halfOpenMs: 60_000 })
    const run = (kind: string) => c.run(async () => ({ kind }))
    await run('retryable')
    await run('unknown_outcome')
    await run('issued') // the provider answered: a new run
    await run('unknown_outcome')
    await run('retryable')
    await run('retryable')
    expect(c.state()).toBe('closed')
    await run('unknown_outcome')
    expect(c.state()).toBe('open')
    const d = createCircuit({ failures: 3, unknownOutcomes: 2, halfOpenMs: 60_000 })
    for (let i = 0; i < 3; i++) await d.run(async () => ({ kind: 'retryable' }))
    expect(d.state()).toBe('open')
  })
})
