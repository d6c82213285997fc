/** Where the tests find Postgres and Redis (CI: 127.0.0.1:5432 trust auth, 127.0.0.1:6379). */
export const TEMPLATE_DB = 'cash_receipts_test_template'

export function pgServerUrl(): string {
  return process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432'
}
export function adminUrl(): string {
  return `${pgServerUrl()}/postgres`
}
export function dbUrl(name: string): string {
  return `${pgServerUrl()}/${name}`
}
export function redisUrl(): string {
  return process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
}
