/**
 * Who may use the dashboard: `Authorization: Bearer <DASHBOARD_TOKEN>` (scripts, Prometheus), or
 * HTTP basic auth for browsers — DASHBOARD_USER/DASHBOARD_PASSWORD, or any user name with the token
 * as password. /healthz and /readyz stay open (they reveal nothing but up/down).
 *
 * Writes (the re-drive button, Bull Board actions) are POST only and refused when the browser says
 * the request comes from another site (Origin / Sec-Fetch-Site): a browser re-sends cached basic
 * credentials with a cross-site form post, so credentials alone do not stop CSRF.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { ConfigError, type AppConfig } from '../config.ts'

type ServeAuth = Pick<AppConfig['serve'], 'authToken' | 'basicAuth'>

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (h === 'localhost' || h === '::1') return true
  if (isIP(h) === 4) return h.startsWith('127.')
  return h.startsWith('::ffff:127.')
}

export function authConfigured(auth: ServeAuth): boolean {
  return Boolean(auth.authToken || auth.basicAuth)
}

/** `serve` refuses to listen beyond loopback without credentials (exit 2 through ConfigError). */
export function assertServeSecurity(serve: ServeAuth & { host: string }): void {
  if (!authConfigured(serve) && !isLoopback(serve.host)) {
    throw new ConfigError(
      `HOST: the dashboard would listen on ${serve.host} without authentication; set DASHBOARD_TOKEN or DASHBOARD_USER and DASHBOARD_PASSWORD, or bind to 127.0.0.1`,
    )
  }
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest()
/** Constant-time comparison (hashing first makes the lengths equal). */
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b))

/**
 * `<scheme> <credentials>` exactly (RFC 9110 §11.4): one scheme, one run of spaces, one token68
 * value. Anything after it (`Bearer <token> junk`) or a value outside token68 is refused, not trimmed.
 */
const AUTH_HEADER = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*) +([A-Za-z0-9._~+/-]+=*)$/

export function isAuthorized(header: string | undefined, auth: ServeAuth): boolean {
  if (!authConfigured(auth)) return true
  if (!header) return false
  const m = AUTH_HEADER.exec(header.trim())
  if (!m) return false
  const [, scheme = '', value = ''] = m
  if (/^bearer$/i.test(scheme)) return Boolean(auth.authToken && same(value, auth.authToken))
  if (/^basic$/i.test(scheme)) {
    // Strict base64: Buffer.from skips characters it does not know, so re-encode and compare.
    const raw = Buffer.from(value, 'base64')
    if (raw.toString('base64').replace(/=+$/, '') !== value.replace(/=+$/, '')) return false
    const decoded = raw.toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return false
    const user = decoded.slice(0, colon)
    const password = decoded.slice(colon + 1)
    // Both comparisons always run: no early exit that would tell which part was wrong.
    const basicOk = auth.basicAuth ? same(user, auth.basicAuth.user) && same(password, auth.basicAuth.password) : false
    const tokenOk = auth.authToken ? same(password, auth.authToken) : false
    return basicOk || tokenOk
  }
  return false
}

const hostName = (hostHeader: string): string => {
  const h = hostHeader.trim().toLowerCase()
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1)
  return h.replace(/:\d*$/, '').replace(/\.$/, '')
}

/**
 * Whether the dashboard answers to this Host header: loopback names, IP literals (a DNS rebinding
 * attack needs a name the attacker controls, so an address in Host cannot come from one), and the
 * configured DASHBOARD_ALLOWED_HOSTS.
 */
export function isAllowedHost(hostHeader: string | undefined, allowed: readonly string[]): boolean {
  if (!hostHeader) return false
  const h = hostName(hostHeader)
  if (!h) return false
  if (isLoopback(h) || h.endsWith('.localhost')) return true
  if (isIP(h.replace(/^\[|\]$/g, ''))) return true
  return allowed.includes(h)
}

/** 421 Misdirected Request for any other Host (checked before credentials: no 401 challenge either). */
export function allowedHosts(serve: { readonly allowedHosts?: readonly string[] }): RequestHandler {
  const allowed = serve.allowedHosts ?? []
  return (req: Request, res: Response, next: NextFunction) => {
    if (isAllowedHost(req.headers.host, allowed)) return next()
    res.status(421).type('text/plain').send('this dashboard does not answer to that host name; add it to DASHBOARD_ALLOWED_HOSTS if it is yours\n')
  }
}

/**
 * Who made an (authorised) request, for the audit log: the basic-auth user, or the token's name
 * (there is one, DASHBOARD_TOKEN); without credentials configured, the loopback user.
 */
export function requestActor(header: string | undefined, auth: ServeAuth): string {
  if (!authConfigured(auth)) return 'dashboard:loopback (no credentials configured)'
  const m = AUTH_HEADER.exec((header ?? '').trim())
  if (m && /^basic$/i.test(m[1]!)) {
    const decoded = Buffer.from(m[2]!, 'base64').toString('utf8')
    const user = decoded.slice(0, Math.max(0, decoded.indexOf(':')))
    if (auth.basicAuth && same(user, auth.basicAuth.user)) return `dashboard:${auth.basicAuth.user}`
    return 'token:DASHBOARD_TOKEN'
  }
  return 'token:DASHBOARD_TOKEN'
}

export function requireAuth(auth: ServeAuth): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (isAuthorized(req.headers.authorization, auth)) return next()
    res.set('WWW-Authenticate', 'Basic realm="cash-receipts", charset="UTF-8"')
    res.status(401).type('text/plain').send('authentication required\n')
  }
}

/** Refuses cross-site writes; same-origin pages, curl and Prometheus (no Origin header) pass. */
export function sameOriginWrites(): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next()
    const site = req.get('sec-fetch-site')
    const origin = req.get('origin')
    let crossOrigin = site === 'cross-site' || site === 'same-site'
    if (origin && origin !== 'null') {
      try {
        crossOrigin ||= new URL(origin).host !== req.get('host')
      } catch {
        crossOrigin = true
      }
    } else if (origin === 'null') {
      crossOrigin = true
    }
    if (crossOrigin) {
      res.status(403).type('text/plain').send('cross-site request refused\n')
      return
    }
    next()
  }
}
