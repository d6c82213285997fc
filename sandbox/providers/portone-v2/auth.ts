/**
 * PortOne V2 credentials: `Authorization: PortOne <secret>` on every call, or `Bearer <accessToken>`
 * from `POST /login/api-secret` (access 30 min, refresh 1 day, rotated on every login or refresh).
 * Valid secrets are `v2-secret-<x>`; their store is `store-<x>` and their merchant `merchant-<x>`.
 */
import type { SimRequest, SimResponse } from '../../sim.ts'
import { header, nonEmpty, pruneHead, randomHex, suffixAfter } from '../../sim.ts'
import { invalid, unauthorized } from './answers.ts'

const ACCESS_TTL_MS = 30 * 60_000
const REFRESH_TTL_MS = 24 * 3600_000
const SECRET_PREFIX = 'v2-secret-'

const suffix = (secret: string) => secret.slice(SECRET_PREFIX.length)
export const storeOf = (secret: string) => `store-${suffix(secret)}`
export const merchantOf = (secret: string) => `merchant-${suffix(secret)}`
export const channelIdOf = (secret: string) => `channel-id-${suffix(secret)}`

export interface V2Auth {
  /** The API secret a request acts for, or null. */
  secretOf(req: SimRequest): string | null
  /** The secret behind a refresh token (for rate limits), or null. */
  secretOfRefresh(token: unknown): string | null
  /** `POST /login/api-secret`. */
  login(req: SimRequest): SimResponse
  /** `POST /token/refresh`. */
  refresh(req: SimRequest): SimResponse
  reset(): void
}

export function createV2Auth(): V2Auth {
  const accessTokens = new Map<string, { secret: string; expiresAt: number }>()
  const refreshTokens = new Map<string, { secret: string; expiresAt: number }>()
  const refreshOfSecret = new Map<string, string>()

  function tokenPair(secret: string, nowMs: number): SimResponse {
    const old = refreshOfSecret.get(secret)
    if (old) refreshTokens.delete(old)
    pruneHead(accessTokens, (v) => v.expiresAt <= nowMs)
    pruneHead(refreshTokens, (v) => v.expiresAt <= nowMs)
    const accessToken = `sbx-at-${randomHex(24)}`
    const refreshToken = `sbx-rt-${randomHex(24)}`
    accessTokens.set(accessToken, { secret, expiresAt: nowMs + ACCESS_TTL_MS })
    refreshTokens.set(refreshToken, { secret, expiresAt: nowMs + REFRESH_TTL_MS })
    refreshOfSecret.set(secret, refreshToken)
    return { status: 200, body: { accessToken, refreshToken } }
  }

  return {
    secretOf(req) {
      const raw = header(req, 'authorization')
      if (!raw) return null
      const sp = raw.indexOf(' ')
      if (sp < 0) return null
      const scheme = raw.slice(0, sp).toLowerCase()
      const value = raw.slice(sp + 1).trim()
      if (scheme === 'portone') return suffixAfter(value, SECRET_PREFIX) ? value : null
      if (scheme === 'bearer') {
        const t = accessTokens.get(value)
        return t && t.expiresAt > req.nowMs ? t.secret : null
      }
      return null
    },
    secretOfRefresh(token) {
      return (typeof token === 'string' ? refreshTokens.get(token)?.secret : undefined) ?? null
    },
    login(req) {
      const secret = req.body?.apiSecret
      if (!nonEmpty(secret)) return invalid('apiSecret은 필수입니다.')
      if (!suffixAfter(secret, SECRET_PREFIX)) return unauthorized()
      return tokenPair(secret, req.nowMs)
    },
    refresh(req) {
      const token = req.body?.refreshToken
      if (!nonEmpty(token)) return invalid('refreshToken은 필수입니다.')
      const t = refreshTokens.get(token)
      if (!t || t.expiresAt <= req.nowMs) return unauthorized('유효하지 않은 리프레시 토큰입니다.')
      return tokenPair(t.secret, req.nowMs)
    },
    reset() {
      accessTokens.clear()
      refreshTokens.clear()
      refreshOfSecret.clear()
    },
  }
}
