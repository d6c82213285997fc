/**
 * Issue 22, item 6: the import's unknown-column hints (edit distance to the known columns, names
 * that look like data never repeated) and the summary line's counts for 0, 1 and many.
 */
import { describe, expect, it } from 'vitest'
import { editDistance, isKnownColumn, suggestColumn, unknownColumnMessage } from '../../src/import/columns.ts'
import { summaryLine } from '../../src/cli/commands/import.ts'

describe('unknown import columns', () => {
  it('measures edit distance', () => {
    expect(editDistance('buyer_mail', 'buyer_email')).toBe(1)
    expect(editDistance('', 'abc')).toBe(3)
    expect(editDistance('amount', 'amount')).toBe(0)
    expect(editDistance('kitten', 'sitting')).toBe(3)
  })

  it('suggests the column a slip of the keyboard meant, and nothing for an unrelated name', () => {
    expect(suggestColumn('buyer_mail')).toBe('buyer_email')
    expect(suggestColumn('Buyer-Email')).toBe('buyer_email')
    expect(suggestColumn('amout')).toBe('amount')
    expect(suggestColumn('paid at')).toBe('paid_at')
    expect(suggestColumn('transactionid')).toBe('transaction_id')
    expect(suggestColumn('memo')).toBeUndefined()
    expect(suggestColumn('x')).toBeUndefined()
    expect(suggestColumn('결제금액')).toBeUndefined()
  })

  it('knows the import columns and the rejects file reason column', () => {
    expect(isKnownColumn('buyer_email')).toBe(true)
    expect(isKnownColumn('reject_reason')).toBe(true)
    expect(isKnownColumn('buyer_mail')).toBe(false)
  })

  it('never repeats a column name that looks like data (a header row missing)', () => {
    expect(unknownColumnMessage('010-1234-5678', 9)).toEqual({
      field: 'column 9',
      message: 'column 9 is not an import column and is ignored (its name looks like data, so it is not shown: is the header row missing?)',
    })
    expect(JSON.stringify(unknownColumnMessage('kim@example.com'))).not.toContain('example')
    expect(unknownColumnMessage('buyer_mail', 3)).toEqual({
      field: 'buyer_mail',
      message: 'column "buyer_mail" is not an import column and is ignored; did you mean "buyer_email"?',
    })
  })
})

describe('the import summary line', () => {
  const base = { written: true, fileRejected: false, rows: 0, inserted: 0, updated: 0, unchanged: 0, rejected: 0 }
  it('counts right for 0, 1 and many', () => {
    expect(summaryLine({ ...base, rows: 1, inserted: 1 })).toBe('imported 1 of 1 row: 1 new, 0 updated, 0 unchanged, 0 rejected')
    expect(summaryLine({ ...base, rows: 3, inserted: 1, unchanged: 1, rejected: 1 })).toBe('imported 2 of 3 rows: 1 new, 0 updated, 1 unchanged, 1 rejected')
    expect(summaryLine({ ...base, rows: 2, rejected: 2 })).toBe('imported 0 of 2 rows: 0 new, 0 updated, 0 unchanged, 2 rejected')
    expect(summaryLine({ ...base, written: false, rows: 1, rejected: 1 })).toBe('nothing written: 1 of 1 row is invalid (fix it, or use --skip-invalid)')
    expect(summaryLine({ ...base, written: false, rows: 5, rejected: 2 })).toBe('nothing written: 2 of 5 rows are invalid (fix them, or use --skip-invalid)')
    expect(summaryLine({ ...base, written: false, fileRejected: true })).toBe(
      'nothing written: the file cannot be imported as it is (0 rows read; fix what is named above and import it again)',
    )
  })
})
