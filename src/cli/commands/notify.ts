/** `cash-receipts notify`: buyer notification counts, and failed notifications back on the queue. */
import { Option, type Command } from 'commander'
import { osActor } from '../../db/audit.ts'
import { NOTIFY_CHANNELS } from '../../domain/index.ts'
import { printJson } from '../output.ts'
import { UsageError, type CliContext } from '../run.ts'

const STATES = ['pending', 'sending', 'sent', 'failed', 'skipped'] as const

export function registerNotify(program: Command, { withApp }: CliContext): void {
  const notify = program.command('notify').description('buyer notifications (email, SMS, KakaoTalk) after an issue or a cancellation: counts and re-drive')

  notify
    .command('status')
    .description('notifications per channel and state (pending, sending, sent, failed, skipped)')
    .option('--json', 'print the counts as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const counts = await app.notificationCounts()
        if (o.json) {
          printJson({ ...counts.total, by_channel: counts.byChannel })
          return
        }
        const rows = Object.entries(counts.byChannel).sort(([a], [b]) => a.localeCompare(b))
        if (rows.length === 0) {
          process.stdout.write('notify: no notifications (no merchant has a channel switched on, or nothing was issued since)\n')
          return
        }
        process.stdout.write(`${['channel', ...STATES].map((h) => h.padEnd(9)).join(' ')}\n`)
        for (const [channel, c] of rows) process.stdout.write(`${[channel, ...STATES.map((s) => String(c[s]))].map((v) => v.padEnd(9)).join(' ')}\n`)
        if (counts.total.failed > 0) process.stdout.write(`${counts.total.failed} failed: \`cash-receipts notify redrive\` sends them again\n`)
      }),
    )

  notify
    .command('redrive')
    .description('put failed notifications back on the queue under fresh job ids (after fixing the cause); the workers send them')
    .addOption(new Option('--channel <channel>', 'only this channel').choices([...NOTIFY_CHANNELS]))
    .option('--merchant <id>', "only this merchant's notifications")
    .option('--dry-run', 'show how many would be re-driven')
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        if (o.merchant && !(await app.merchantExists(o.merchant))) throw new UsageError(`--merchant: no merchant "${o.merchant}"`)
        const byChannel = await app.redriveNotifications({ merchantId: o.merchant, channel: o.channel }, { dryRun: Boolean(o.dryRun) })
        const count = byChannel.reduce((n, c) => n + c.count, 0)
        if (!o.dryRun) await app.audit({ actor: osActor(), action: 'notify-redrive', selectors: { channel: o.channel, merchant: o.merchant }, counts: { notifications: count } })
        if (o.json) {
          printJson({ dry_run: Boolean(o.dryRun), count, by_channel: Object.fromEntries(byChannel.map((c) => [c.channel, c.count])) })
          return
        }
        const what = `${count} notifications${count ? ` (${byChannel.map((c) => `${c.channel} ${c.count}`).join(', ')})` : ''}`
        process.stdout.write(o.dryRun ? `dry run: would re-drive ${what}\n` : `re-driven ${what}\n`)
      }),
    )
}
