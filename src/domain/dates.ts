/**
 * KST business dates. Korea has no daylight saving (UTC+9 since 1988), so the arithmetic is fixed
 * and never depends on the machine's time zone. Dates are 'YYYY-MM-DD' strings.
 */
import { err, ok, type Result } from './result.ts'

const KST_OFFSET_MS = 9 * 3600_000
const DAY_MS = 86_400_000
/** Payments stamped this far in the future are accepted (clock skew between systems). */
const FUTURE_TOLERANCE_MS = 10 * 60_000

export function isValidDate(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s)
  if (!m) return false
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])))
  return d.getUTCFullYear() === Number(m[1]) && d.getUTCMonth() === Number(m[2]) - 1 && d.getUTCDate() === Number(m[3])
}

export function businessDateOf(instant: Date | number): string {
  const ms = typeof instant === 'number' ? instant : instant.getTime()
  return new Date(ms + KST_OFFSET_MS).toISOString().slice(0, 10)
}

/**
 * The Korean wall-clock time of an instant as 'YYYY-MM-DDTHH:mm:ss.sss' (no offset): what a receipt,
 * a page or a provider field that expects KST shows. Callers take the part they need.
 */
export function kstWallClock(instant: Date | number): string {
  const ms = typeof instant === 'number' ? instant : instant.getTime()
  return new Date(ms + KST_OFFSET_MS).toISOString().slice(0, 23)
}

/**
 * The one way pages, reports and receipts show an instant: Korean wall-clock time with its label,
 * 'YYYY-MM-DD HH:mm:ss KST' (or to the minute). Every rendered time goes through here so none shows
 * UTC or the machine's zone by accident; the label is the same in every language.
 */
export function kstDateTime(instant: Date | number | string, precision: 'second' | 'minute' = 'second'): string {
  const ms = typeof instant === 'string' ? Date.parse(instant) : typeof instant === 'number' ? instant : instant.getTime()
  return `${kstWallClock(ms)
    .slice(0, precision === 'second' ? 19 : 16)
    .replace('T', ' ')} KST`
}

export const kstToday = (nowMs: number): string => businessDateOf(nowMs)
export const kstYesterday = (nowMs: number): string => addDays(businessDateOf(nowMs), -1)

export function msUntilKstMidnight(nowMs: number): number {
  return DAY_MS - ((nowMs + KST_OFFSET_MS) % DAY_MS)
}

export function addDays(date: string, n: number): string {
  if (!isValidDate(date)) throw new RangeError(`not a YYYY-MM-DD date: ${date}`)
  return new Date(Date.parse(`${date}T00:00:00Z`) + n * DAY_MS).toISOString().slice(0, 10)
}

const deadlines = new Map<string, string>()
/**
 * Legal deadline: issue within 5 days of receiving the money, counted with the trade date as day 1 (docs/tax-law.md §2).
 * Settlement asks it for every row of a day that has only a handful of distinct dates: the answers
 * are kept (a pure function of the date; the cache is emptied when it holds 256, so it stays small).
 */
export const legalDeadline = (businessDate: string): string => {
  let d = deadlines.get(businessDate)
  if (d === undefined) {
    d = addDays(businessDate, 4) // throws on an invalid date, which is therefore never kept
    if (deadlines.size >= 256) deadlines.clear()
    deadlines.set(businessDate, d)
  }
  return d
}
export const isOverdue = (businessDate: string, todayKst: string): boolean => legalDeadline(businessDate) < todayKst
/** First business date whose unissued transactions a settlement of `date` still carries over. */
export const carryOverFrom = (date: string): string => addDays(date, -4)

const ISO_WITH_OFFSET = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/

export function parsePaidAt(raw: string | undefined | null, nowMs: number): Result<Date> {
  const s = (raw ?? '').trim()
  if (!s) return err('paid_at', 'required', 'is required (ISO 8601 with offset, e.g. 2026-11-21T14:03:00+09:00)')
  const m = ISO_WITH_OFFSET.exec(s)
  if (!m) {
    if (/^\d{4}-\d{2}-\d{2}(T[\d:.]+)?$/.test(s)) return err('paid_at', 'offset', `"${s}" has no UTC offset; add +09:00 (KST) or Z`)
    return err('paid_at', 'format', 'is not an ISO 8601 date-time with offset (e.g. 2026-11-21T14:03:00+09:00)')
  }
  if (!isValidDate(`${m[1]}-${m[2]}-${m[3]}`) || Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6] ?? 0) > 59) {
    return err('paid_at', 'date', `"${s}" is not a real date and time`)
  }
  const d = new Date(s)
  if (Number.isNaN(d.getTime())) return err('paid_at', 'date', `"${s}" is not a real date and time`)
  if (d.getTime() > nowMs + FUTURE_TOLERANCE_MS) return err('paid_at', 'future', `${s} is in the future`)
  return ok(d)
}
