/**
 * The audit trail of operator actions (re-drive, cancel, reconcile repairs, import): the one module
 * that writes and reads `audit_log`. Selectors and counts hold ids, dates, codes and numbers only.
 */
import { userInfo } from 'node:os'
import { sql } from 'kysely'
import type { Db } from './database.ts'
import { keysetPage, type PageOf, type PageRequest } from './keyset.ts'

export type AuditAction = 'redrive' | 'cancel' | 'reconcile' | 'import' | 'notify-redrive'

export interface AuditEntry {
  readonly actor: string
  readonly action: AuditAction
  readonly selectors: Readonly<Record<string, unknown>>
  readonly counts: Readonly<Record<string, number>>
}

export interface AuditRow extends AuditEntry {
  readonly id: number
  readonly at: Date
}

/** The actor of a CLI command: the OS user running it. */
export function osActor(): string {
  try {
    return `os:${userInfo().username}`
  } catch {
    return `os:uid-${process.getuid?.() ?? 'unknown'}`
  }
}

const defined = (o: Readonly<Record<string, unknown>>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null && v !== ''))

export async function recordAudit(db: Db, e: AuditEntry): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({ actor: e.actor.slice(0, 200), action: e.action, selectors: JSON.stringify(defined(e.selectors)), counts: JSON.stringify(e.counts) })
    .execute()
}

/** Operator actions from `since` on, oldest first (at most `limit`): a report's operator actions. */
export async function auditSince(db: Db, since: Date, limit = 200): Promise<AuditRow[]> {
  const rows = await db.selectFrom('audit_log').selectAll().where('at', '>=', since).orderBy('id').limit(limit).execute()
  return rows.map((r) => ({ id: Number(r.id), at: r.at, actor: r.actor, action: r.action as AuditAction, selectors: r.selectors, counts: r.counts as Record<string, number> }))
}

export async function recentAudit(db: Db, limit = 50): Promise<AuditRow[]> {
  const rows = await db.selectFrom('audit_log').selectAll().orderBy('id', 'desc').limit(limit).execute()
  return rows.map((r) => ({ id: Number(r.id), at: r.at, actor: r.actor, action: r.action as AuditAction, selectors: r.selectors, counts: r.counts as Record<string, number> }))
}

/**
 * The audit log, newest first, a keyset page of it (src/db/keyset.ts); with a merchant, only the
 * actions whose selectors name it (`merchant`).
 */
export async function auditPage(db: Db, page: PageRequest<number>, merchantId?: string): Promise<PageOf<AuditRow, number>> {
  return keysetPage<AuditRow, number>(
    page,
    (a) => a.id,
    async (cursor, limit) => {
      let q = db.selectFrom('audit_log').selectAll()
      if (cursor) q = q.where('id', cursor.forward ? '<' : '>', String(cursor.key))
      if (merchantId) q = q.where(sql<boolean>`selectors ->> 'merchant' = ${merchantId}`)
      const rows = await q
        .orderBy('id', cursor && !cursor.forward ? 'asc' : 'desc')
        .limit(limit)
        .execute()
      return rows.map((r) => ({ id: Number(r.id), at: r.at, actor: r.actor, action: r.action as AuditAction, selectors: r.selectors, counts: r.counts as Record<string, number> }))
    },
  )
}
