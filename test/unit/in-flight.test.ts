import { describe, expect, it } from 'vitest'
import { InFlight } from '../../src/throttle/throttle.ts'

describe('InFlight (calls in flight to one provider)', () => {
  it('caps the places and hands a freed place to a waiter', async () => {
    const f = new InFlight(2)
    expect(await f.tryTake(0)).toBe(true)
    expect(await f.tryTake(0)).toBe(true)
    expect(await f.tryTake(0)).toBe(false)
    const waiting = f.tryTake(1_000)
    f.release()
    expect(await waiting).toBe(true)
    expect(f.active).toBe(2)
  })

  it('sends refused callers away for as long as no place has come free, 100 ms to 5 s', async () => {
    let t = 1_000_000
    const f = new InFlight(2, () => t)
    await f.tryTake(0)
    t += 60_000 // a long idle stretch before the cap fills does not count as stuck
    await f.tryTake(0)
    expect(f.retryInMs()).toBe(100)
    t += 2_500 // a hanging provider: nothing freed for 2.5 s
    expect(f.retryInMs()).toBe(2_500)
    t += 10_000
    expect(f.retryInMs()).toBe(5_000)
    f.release() // answering again: back to the short retry
    expect(f.retryInMs()).toBe(100)
    await f.tryTake(0)
    t += 30
    expect(f.retryInMs()).toBe(100)
  })
})
