import { describe, expect, it } from 'vitest'
import { ExpositionError, parseExposition } from '../helpers/prometheus-text.ts'

const gauge = (value: string) => `# HELP g a gauge\n# TYPE g gauge\ng ${value}\n`
const valueOf = (text: string) => parseExposition(text).get('g')!.samples[0]!.value

describe('the test parser of the Prometheus text format', () => {
  it('reads NaN and the infinities in any letter case, as Prometheus does', () => {
    for (const raw of ['NaN', 'Nan', 'nan', 'NAN']) expect(valueOf(gauge(raw))).toBeNaN()
    for (const raw of ['+Inf', 'Inf', 'inf', '+inf', 'Infinity', '+infinity']) expect(valueOf(gauge(raw))).toBe(Infinity)
    for (const raw of ['-Inf', '-inf', '-Infinity']) expect(valueOf(gauge(raw))).toBe(-Infinity)
  })

  it('reads plain and exponent numbers', () => {
    expect(valueOf(gauge('42'))).toBe(42)
    expect(valueOf(gauge('-1.5e3'))).toBe(-1500)
    expect(valueOf(gauge('.25'))).toBe(0.25)
  })

  it('rejects what is not a number, naming the line', () => {
    for (const raw of ['Nanx', 'infinite', '1,5', '0x10', 'null']) {
      expect(() => parseExposition(gauge(raw))).toThrow(new ExpositionError(`line 3: bad value "${raw}"`))
    }
  })
})
