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

export function isAuthorized(header: string | undefined, auth: ServeAuth): boolean {
  if (!authConfigured(auth)) return true
  if (!header) return false
  const [scheme, value = ''] = header.trim().split(/\s+/, 2)
  if (/^bearer$/i.test(scheme ?? '')) return Boolean(auth.authToken && same(value, auth.authToken))
  if (/^basic$/i.test(scheme ?? '')) {
    const decoded = Buffer.from(value, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return false
    const user = decoded.slice(0, colon)
    const password = decoded.slice(colon + 1)
    // Both comparisons always run: no early exit that would tell which part was wrong.
    const basicOk = auth.basicAuth
      ? same(user, auth.basicAuth.user) && same(password, auth.basicAuth.password)
      : false
    const tokenOk = auth.authToken ? same(password, auth.authToken) : false
    return basicOk || tokenOk
  }
  return false
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
