/** Where the tests find Postgres and Redis (CI: 127.0.0.1:5432 trust auth, 127.0.0.1:6379). */
/**
 * Databases of a test run are named `<TEST_DB_NS>_…` (default `crt`). Global setup drops leftovers of
 * its own namespace only, so two runs with different namespaces can share one Postgres server.
 */
export const TEST_DB_NS = /^[a-z][a-z0-9]{0,15}$/.test(process.env.TEST_DB_NS ?? '') ? process.env.TEST_DB_NS! : 'crt'
export const TEMPLATE_DB = `${TEST_DB_NS}_template`

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
