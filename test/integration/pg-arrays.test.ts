/**
 * The array literals settlement sends instead of JavaScript arrays (src/db/pg-arrays.ts) read back in
 * real Postgres as exactly the values given, whatever the text holds, and as pg's own encoding of the
 * same values does.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { boolArray, intArray, textArray } from '../../src/db/pg-arrays.ts'
import { createTestDatabase } from '../helpers/test-env.ts'

let database: Awaited<ReturnType<typeof createTestDatabase>>
let client: pg.Client

beforeAll(async () => {
  database = await createTestDatabase()
  client = new pg.Client({ connectionString: database.url })
  await client.connect()
})
afterAll(async () => {
  await client?.end()
  await database?.drop()
})

const id = <T>(v: T) => v
const TEXTS = ['', 'NULL', 'null', ' spaced ', 'a,b', '{braces}', '"quoted"', 'back\\slash', '\\"', 'tab\tnew\nline', '현금영수증 🧾', "it's", 'CR0A1B2C3D4E5F60718', null]

describe('array literals for unnest parameters', () => {
  it('text: every string reads back unchanged, NULL stays NULL, as with pg’s own array encoding', async () => {
    const ours = await client.query<{ a: (string | null)[] }>('SELECT $1::text[] AS a', [textArray(TEXTS, id)])
    const theirs = await client.query<{ a: (string | null)[] }>('SELECT $1::text[] AS a', [TEXTS])
    expect(ours.rows[0]!.a).toEqual(TEXTS)
    expect(theirs.rows[0]!.a).toEqual(TEXTS)
  })

  it('dates and timestamps go as text', async () => {
    const res = await client.query<{ d: string[]; t: string[] }>('SELECT $1::date[]::text[] AS d, $2::timestamptz[] AS t', [
      textArray(['2026-11-21', '2026-11-25'], id),
      textArray(['2026-11-21T03:04:05.678Z', null], id),
    ])
    expect(res.rows[0]!.d).toEqual(['2026-11-21', '2026-11-25'])
    expect((res.rows[0]!.t as unknown as (Date | null)[]).map((t) => t && t.toISOString())).toEqual(['2026-11-21T03:04:05.678Z', null])
  })

  it('integers and booleans, with NULLs; a fraction or NaN is refused before it reaches Postgres', async () => {
    const ints = [0, -1, 999_999_999, Number.MAX_SAFE_INTEGER, null]
    const res = await client.query<{ i: string[]; b: (boolean | null)[] }>('SELECT $1::bigint[]::text[] AS i, $2::boolean[] AS b', [
      intArray(ints, id),
      boolArray([true, false, null], id),
    ])
    expect(res.rows[0]!.i).toEqual(['0', '-1', '999999999', String(Number.MAX_SAFE_INTEGER), null])
    expect(res.rows[0]!.b).toEqual([true, false, null])
    expect(() => intArray([1.5], id)).toThrow(RangeError)
    expect(() => intArray([Number.NaN], id)).toThrow(RangeError)
  })

  it('an empty column is an empty array', async () => {
    const res = await client.query<{ n: number }>('SELECT cardinality($1::text[]) + cardinality($2::bigint[]) + cardinality($3::boolean[]) AS n', [
      textArray([], id),
      intArray([], id),
      boolArray([], id),
    ])
    expect(res.rows[0]!.n).toBe(0)
  })
})
