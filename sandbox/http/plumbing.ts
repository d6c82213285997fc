/**
 * The sandbox's HTTP plumbing: the node:http server (keep-alive, socket tracking so close() drops
 * every connection), the request record every handler reads (arrival time, path, query, body text),
 * body parsing as the simulators want it, and the three ways an answer leaves: sent whole, held
 * until the client gives up, or the connection reset. Faults act on the socket, below express.
 */
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { NextFunction, Request, Response } from 'express'
import type { SimResponse } from '../sim.ts'

const MAX_BODY = 1_000_000

/** What every handler reads of a request, taken once when it arrives. */
export interface Incoming {
  /** Real time of arrival: rate windows count a request when it arrives, as a gateway does. */
  readonly arrivedAt: number
  /** The raw path (not decoded), without the query. */
  readonly pathname: string
  readonly query: URLSearchParams
  readonly body: string
}

const incoming = new WeakMap<IncomingMessage, Incoming>()

/** The record `readIncoming` stored for this request. */
export function incomingOf(req: IncomingMessage): Incoming {
  const i = incoming.get(req)
  if (!i) throw new Error('readIncoming must run before the sandbox handlers')
  return i
}

/** First middleware: stamps the arrival, reads the body (413 past MAX_BODY), and stores the record. */
export function readIncoming(req: Request, res: Response, next: NextFunction): void {
  const arrivedAt = Date.now()
  const raw = req.originalUrl || req.url || '/'
  const qi = raw.indexOf('?')
  const pathname = qi < 0 ? raw : raw.slice(0, qi)
  const query = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1))
  readBody(req).then((body) => {
    if (body === null) return send(res, { status: 413, body: { error: 'request body too large' } })
    incoming.set(req, { arrivedAt, pathname, query, body })
    next()
  }, next)
}

/** The body as text, or null when it exceeds MAX_BODY. */
function readBody(req: IncomingMessage): Promise<string | null> {
  if (req.headers['content-length'] === '0' || (req.method === 'GET' && !req.headers['transfer-encoding'] && !req.headers['content-length'])) {
    req.resume()
    return Promise.resolve('')
  }
  return new Promise((resolve, reject) => {
    let size = 0
    let tooBig = false
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) tooBig = true
      else chunks.push(c)
    })
    req.on('end', () => resolve(tooBig ? null : Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

/**
 * The body as an object: JSON whatever the Content-Type (@portone/server-sdk sends text/plain), or
 * form fields for `application/x-www-form-urlencoded` or a form sent without its Content-Type.
 */
export function parseBody(text: string, contentType: string | undefined): { body: Record<string, unknown> | null; invalid: boolean } {
  if (!text || !text.trim()) return { body: null, invalid: false }
  if (contentType?.includes('application/x-www-form-urlencoded')) {
    return { body: Object.fromEntries(new URLSearchParams(text)), invalid: false }
  }
  try {
    const v = JSON.parse(text) as unknown
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? { body: v as Record<string, unknown>, invalid: false } : { body: null, invalid: true }
  } catch {
    if (/^[^{[\s"][^=&]*=/.test(text)) {
      return { body: Object.fromEntries(new URLSearchParams(text)), invalid: false }
    }
    return { body: null, invalid: true }
  }
}

/** Writes an answer whole (JSON unless the body is a string), unless one was sent or the socket is gone. */
export function send(res: ServerResponse, r: SimResponse): void {
  if (res.headersSent || res.destroyed) return
  const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body)
  res.writeHead(r.status, {
    'content-type': 'application/json; charset=utf-8',
    ...r.headers,
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}

/** Holds the request unanswered until the client goes away or `ms` pass, then drops the connection. */
export async function hang(req: IncomingMessage, ms: number): Promise<void> {
  const socket = req.socket
  if (!socket.destroyed) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        socket.off('close', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      socket.once('close', done)
    })
  }
  socket.destroy()
}

/** Drops the connection without an answer (a TCP RST where the platform allows it). */
export function resetConnection(req: IncomingMessage): void {
  const s = req.socket as Socket & { resetAndDestroy?: () => Socket }
  if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy()
  else s.destroy()
}

export interface Listening {
  /** Origin, e.g. `http://127.0.0.1:4010`. */
  readonly url: string
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>
}

/** Serves `handler` on host:port (0 picks a free port); resolves once it listens. */
export async function listen(handler: RequestListener, port: number, host: string): Promise<Listening> {
  const server = createServer(handler)
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  const sockets = new Set<Socket>()
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  server.on('clientError', (_err, socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const shown = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '[::1]' : addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `http://${shown}:${addr.port}`,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await closed
    },
  }
}
