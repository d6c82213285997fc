/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests. Written here because
 * the npm parser we tried (parse-prometheus-text-format 1.1.1) folds every series of a labelled
 * histogram into one and drops their labels, so it cannot check ours.
 *
 * It throws on anything a Prometheus server would reject or mis-read: malformed lines, bad metric or
 * label names, unknown escapes, unparsable values, a sample outside its declared family, a TYPE after
 * the family's samples, the same series twice, histogram buckets that are not cumulative or whose
 * +Inf bucket differs from _count.
 */
export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Family {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped'
  readonly samples: Sample[]
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

export class ExpositionError extends Error {
  override name = 'ExpositionError'
}

/**
 * Prometheus reads a sample value with Go's strconv.ParseFloat, which takes NaN and the infinities
 * in any letter case ("Inf", "inf", "Infinity", "+Inf", "-inf", "NaN", "nan"). prom-client writes a
 * gauge with no observation yet as "Nan" (nodejs_eventloop_lag_*_seconds before the first event-loop
 * sample), so a parser stricter than the server would fail on a valid scrape.
 */
const SPECIAL_VALUES: ReadonlyMap<string, number> = new Map([
  ['nan', NaN],
  ['inf', Infinity],
  ['+inf', Infinity],
  ['infinity', Infinity],
  ['+infinity', Infinity],
  ['-inf', -Infinity],
  ['-infinity', -Infinity],
])

function parseValue(raw: string, line: number): number {
  const special = SPECIAL_VALUES.get(raw.toLowerCase())
  if (special !== undefined) return special
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw)) {
    throw new ExpositionError(`line ${line}: bad value "${raw}"`)
  }
  return Number(raw)
}

function parseLabels(s: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {}
  let i = 1 // after '{'
  for (;;) {
    while (s[i] === ' ') i++
    if (s[i] === '}') return { labels, rest: s.slice(i + 1) }
    const eq = s.indexOf('=', i)
    if (eq < 0) throw new ExpositionError(`line ${line}: label without "="`)
    const name = s.slice(i, eq).trim()
    if (!LABEL_NAME.test(name)) throw new ExpositionError(`line ${line}: bad label name "${name}"`)
    if (name in labels) throw new ExpositionError(`line ${line}: label "${name}" twice`)
    if (s[eq + 1] !== '"') throw new ExpositionError(`line ${line}: label value of "${name}" not quoted`)
    let v = ''
    let j = eq + 2
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const e = s[++j]
        if (e === 'n') v += '\n'
        else if (e === '\\' || e === '"') v += e
        else throw new ExpositionError(`line ${line}: bad escape "\\${e}" in label "${name}"`)
      } else {
        v += s[j]
      }
    }
    if (j >= s.length) throw new ExpositionError(`line ${line}: unterminated label value`)
    labels[name] = v
    i = j + 1
    if (s[i] === ',') i++
    else if (s[i] !== '}') {
      throw new ExpositionError(`line ${line}: expected "," or "}" after label "${name}"`)
    }
  }
}

/** The family a sample name belongs to, given the declared types. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(name)
  if (direct && direct.type !== 'histogram') return direct
  const m = /^(.*)_(bucket|sum|count)$/.exec(name)
  const base = m ? families.get(m[1]!) : undefined
  if (base && (base.type === 'histogram' || (base.type === 'summary' && m![2] !== 'bucket'))) return base
  return direct
}

export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new ExpositionError('the exposition must end with a line feed')
  const families = new Map<string, Family>()
  const seen = new Set<string>()
  const declare = (name: string) => {
    let f = families.get(name)
    if (!f) {
      f = { name, help: '', type: 'untyped', samples: [] }
      families.set(name, f)
    }
    return f
  }
  text.split('\n').forEach((raw, idx) => {
    const line = idx + 1
    if (raw.trim() === '') return
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(raw)
      if (!m) return // a plain comment
      const [, kind, name, rest = ''] = m
      if (!METRIC_NAME.test(name!)) throw new ExpositionError(`line ${line}: bad metric name "${name}"`)
      const f = declare(name!)
      if (kind === 'HELP') {
        ;(f as { help: string }).help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\')
      } else {
        if (!TYPES.has(rest)) throw new ExpositionError(`line ${line}: unknown type "${rest}"`)
        if (f.samples.length) throw new ExpositionError(`line ${line}: TYPE of ${name} after its samples`)
        ;(f as { type: string }).type = rest
      }
      return
    }
    const nameEnd = raw.search(/[{ ]/)
    if (nameEnd <= 0) throw new ExpositionError(`line ${line}: not a sample: "${raw}"`)
    const name = raw.slice(0, nameEnd)
    if (!METRIC_NAME.test(name)) throw new ExpositionError(`line ${line}: bad metric name "${name}"`)
    let labels: Record<string, string> = {}
    let rest = raw.slice(nameEnd)
    if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest, line))
    const parts = rest.trim().split(/\s+/)
    if (parts.length < 1 || parts.length > 2 || parts[0] === '') {
      throw new ExpositionError(`line ${line}: expected "value [timestamp]"`)
    }
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) {
      throw new ExpositionError(`line ${line}: bad timestamp "${parts[1]}"`)
    }
    const value = parseValue(parts[0]!, line)
    const family = familyOf(name, families) ?? declare(name)
    const key = `${name}{${Object.entries(labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(',')}}`
    if (seen.has(key)) throw new ExpositionError(`line ${line}: series ${key} twice`)
    seen.add(key)
    family.samples.push({ name, labels, value })
  })
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f)
  return families
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>()
  for (const s of f.samples) {
    const { le, ...rest } = s.labels
    const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b)))
    const e = series.get(key) ?? { buckets: [] }
    series.set(key, e)
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new ExpositionError(`${f.name}_bucket without le`)
      e.buckets.push([parseValue(le, 0), s.value])
    } else if (s.name === `${f.name}_count`) e.count = s.value
    else if (s.name === `${f.name}_sum`) e.sum = s.value
    else throw new ExpositionError(`${s.name} is not part of histogram ${f.name}`)
  }
  for (const [key, e] of series) {
    e.buckets.sort((a, b) => a[0] - b[0])
    if (e.buckets.at(-1)?.[0] !== Infinity) throw new ExpositionError(`${f.name}${key}: no +Inf bucket`)
    e.buckets.forEach(([, v], i) => {
      if (i && v < e.buckets[i - 1]![1]) {
        throw new ExpositionError(`${f.name}${key}: buckets are not cumulative`)
      }
    })
    if (e.count === undefined || e.sum === undefined) {
      throw new ExpositionError(`${f.name}${key}: _count or _sum missing`)
    }
    if (e.buckets.at(-1)![1] !== e.count) {
      throw new ExpositionError(`${f.name}${key}: +Inf bucket differs from _count`)
    }
  }
}
