/**
 * Headless Chromium for browser tests: playwright-core driving Debian's chromium (.ci/run installs it
 * when missing). This machine's network is closed: the flags keep Chromium from waiting on
 * connections it will never get (updates, sync, QUIC).
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

export interface Browser {
  readonly context: BrowserContext
  close(): Promise<void>
}

/**
 * A fresh profile each time; `httpCredentials` answers the dashboard's basic-auth challenge.
 * `locale` (default ko-KR, a Korean operator's browser) sets Accept-Language and navigator.language:
 * the dashboard picks its language from it when no `?lang=` is given. `env` is added to Chromium's
 * environment.
 */
export async function launchChromium(opts: { httpCredentials?: { username: string; password: string }; locale?: string; env?: Record<string, string> } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM_PATH}. Install Debian's package with \`apt-get install -y chromium\` (.ci/run does this), or set CHROMIUM_PATH.`)
  }
  const userDataDir = await mkdtemp(join(tmpdir(), 'crt-chromium-'))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ARGS,
    viewport: { width: 1200, height: 900 },
    httpCredentials: opts.httpCredentials,
    locale: opts.locale ?? 'ko-KR',
    // e.g. FONTCONFIG_FILE: a font set without CJK fonts, to show the glyph check can fail.
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
    timeout: 60_000,
  })
  return {
    context,
    async close() {
      await context.close()
      await rm(userDataDir, { recursive: true, force: true })
    },
  }
}
