/**
 * A real SMTP server for tests (the smtp-server package): it speaks SMTP on a local port, accepts
 * every message and keeps it, decoded just enough to read (headers, Subject's encoded words, the
 * text/plain and text/html parts in base64 or quoted-printable).
 */
import { createServer as createNetServer } from 'node:net'
import { SMTPServer } from 'smtp-server'

export interface ReceivedMail {
  readonly envelopeTo: string[]
  readonly raw: string
  readonly headers: Record<string, string>
  readonly subject: string
  readonly messageId: string
  readonly text: string
  readonly html: string
}

export interface TestSmtp {
  readonly port: number
  readonly url: string
  readonly messages: ReceivedMail[]
  /** Starts listening (again) on the same port. */
  start(): Promise<void>
  /** Stops listening: connections are refused until start(). */
  stop(): Promise<void>
}

export async function freePort(): Promise<number> {
  const s = createNetServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

function unfoldHeaders(block: string): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const line of block.replace(/\r\n[ \t]+/g, ' ').split(/\r\n/)) {
    const i = line.indexOf(':')
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  return headers
}

function decodeWords(value: string): string {
  return value.replace(/\?=\s+=\?/g, '?==?').replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_m, _cs: string, enc: string, data: string) =>
    enc.toUpperCase() === 'B'
      ? Buffer.from(data, 'base64').toString('utf8')
      : Buffer.from(
          data.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16))),
          'latin1',
        ).toString('utf8'),
  )
}

function decodeBody(body: string, encoding: string | undefined): string {
  const enc = (encoding ?? '').toLowerCase()
  if (enc === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8')
  if (enc === 'quoted-printable') {
    const bytes = body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16)))
    return Buffer.from(bytes, 'latin1').toString('utf8')
  }
  return body
}

export function parseMail(raw: string, envelopeTo: string[]): ReceivedMail {
  const split = raw.indexOf('\r\n\r\n')
  const headers = unfoldHeaders(raw.slice(0, split))
  const body = raw.slice(split + 4)
  let text = ''
  let html = ''
  const boundary = /boundary="?([^";]+)"?/i.exec(headers['content-type'] ?? '')?.[1]
  const parts = boundary ? body.split(`--${boundary}`).slice(1, -1) : [raw.slice(0, split) + '\r\n\r\n' + body]
  for (const part of parts) {
    const p = part.replace(/^\r\n/, '')
    const i = p.indexOf('\r\n\r\n')
    const h = unfoldHeaders(p.slice(0, i))
    const content = decodeBody(p.slice(i + 4), h['content-transfer-encoding'])
    if ((h['content-type'] ?? '').startsWith('text/plain')) text = content
    if ((h['content-type'] ?? '').startsWith('text/html')) html = content
  }
  return {
    envelopeTo,
    raw,
    headers,
    subject: decodeWords(headers.subject ?? ''),
    messageId: headers['message-id'] ?? '',
    text,
    html,
  }
}

export async function startTestSmtp(opts: { readonly port?: number; readonly listen?: boolean } = {}): Promise<TestSmtp> {
  const port = opts.port ?? (await freePort())
  const messages: ReceivedMail[] = []
  let server: SMTPServer | undefined
  const make = () =>
    new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData(stream, session, callback) {
        const chunks: Buffer[] = []
        stream.on('data', (c: Buffer) => chunks.push(c))
        stream.on('end', () => {
          messages.push(
            parseMail(
              Buffer.concat(chunks).toString('latin1'),
              session.envelope.rcptTo.map((r) => r.address),
            ),
          )
          callback()
        })
      },
    })
  const t: TestSmtp = {
    port,
    url: `smtp://127.0.0.1:${port}`,
    messages,
    async start() {
      if (server) return
      const s = (server = make())
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject)
        s.listen(port, '127.0.0.1', () => resolve())
      })
    },
    async stop() {
      const s = server
      server = undefined
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()))
    },
  }
  if (opts.listen !== false) await t.start()
  return t
}
