/**
 * PortOne V2's `Idempotency-Key` on any POST (16–256 ASCII characters, RFC 8941 quoted; GET ignores
 * it): a completed request is replayed with its original answer for 3 hours, errors included (a 4xx
 * refusal, a 502 PG_PROVIDER); one still running → 409 `IDEMPOTENCY_OUTSTANDING_REQUEST`. Answers
 * given before the request is processed are not kept: 401 (auth), 429 (throttling), a malformed key.
 * A different body under a key already used → 422 (PortOne says only "must not"; the IETF draft it
 * links answers 422). Scope: credential + method + path + key.
 */
import type { IdempotencyHooks, SimRequest, SimResponse } from '../../sim.ts'
import { header, pruneHead, sha256hex } from '../../sim.ts'
import { error, invalid } from './answers.ts'

const IDEMPOTENCY_TTL_MS = 3 * 3600_000

/** RFC 8941 sf-string (`"…"`) or, leniently, the bare key. */
function parseIdempotencyKey(raw: string): string | null {
  const t = raw.trim()
  const inner = t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1).replace(/\\(["\\])/g, '$1') : t
  return inner.length >= 16 && inner.length <= 256 && /^[\x20-\x7e]+$/.test(inner) ? inner : null
}

export function createV2Idempotency(secretOf: (req: SimRequest) => string | null): IdempotencyHooks & { reset(): void } {
  const idem = new Map<string, { state: 'running' | 'done'; response?: SimResponse; at: number; body: string }>()
  return {
    begin(req) {
      if (req.method === 'GET') return null
      const raw = header(req, 'idempotency-key')
      if (raw === undefined) return null
      const secret = secretOf(req)
      if (!secret) return null // the handler answers 401
      const key = parseIdempotencyKey(raw)
      if (key === null) {
        return { early: invalid('Idempotency-Key는 16자 이상 256자 이하의 ASCII 문자열이어야 합니다.') }
      }
      pruneHead(idem, (e) => e.state === 'done' && req.nowMs - e.at > IDEMPOTENCY_TTL_MS)
      const slot = `${secret}\u0000${req.method}\u0000${req.path}\u0000${key}`
      const e = idem.get(slot)
      const body = sha256hex(req.bodyText ?? '')
      if (e && req.nowMs - e.at > IDEMPOTENCY_TTL_MS && e.state === 'done') idem.delete(slot)
      else if (e && e.body !== body) {
        return {
          early: error(422, 'IDEMPOTENCY_KEY_REUSED', '같은 멱등 키로 다른 요청을 보낼 수 없습니다.'),
        }
      } else if (e?.state === 'running') {
        return {
          early: error(409, 'IDEMPOTENCY_OUTSTANDING_REQUEST', '같은 멱등 키로 보낸 요청이 아직 처리 중입니다.'),
        }
      } else if (e?.response) return { early: e.response }
      idem.set(slot, { state: 'running', at: req.nowMs, body })
      return { slot }
    },
    finish(slot, committed) {
      const e = idem.get(slot)
      if (!e) return
      if (committed) {
        e.state = 'done'
        e.response = committed
      } else {
        idem.delete(slot)
      }
    },
    reset() {
      idem.clear()
    },
  }
}
