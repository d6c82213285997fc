/**
 * Counts the Redis commands (by name; EVALSHA by script) and Postgres statements a process sends,
 * written to BENCH_COUNT_DIR/<pid>.json when it exits. Loaded into every process a scenario starts:
 *
 *   BENCH_COUNT_DIR=/tmp/counts BENCH_NODE_ARGS="--import ./bench/count-calls.mjs" npm run bench -- --only ceiling
 *
 * It patches ioredis' and pg's prototypes, so it counts calls, not their cost; a profile says what
 * each costs. Only for measuring: it is not part of the product.
 */
import { createRequire } from 'node:module'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.env.BENCH_COUNT_DIR
if (dir) {
  const require = createRequire(join(process.cwd(), 'package.json'))
  const counts = { redis: {}, pg: {} }
  const bump = (m, k) => (m[k] = (m[k] ?? 0) + 1)
  const { Redis } = require('ioredis')
  const send = Redis.prototype.sendCommand
  const shas = new Map()
  Redis.prototype.sendCommand = function (command, stream) {
    let name = command.name
    if (name === 'evalsha' || name === 'eval') {
      const arg = command.args?.[0]
      name = `${name}:${shas.get(String(arg)) ?? String(arg).slice(0, 8)}`
    }
    bump(counts.redis, name)
    return send.call(this, command, stream)
  }
  // Name BullMQ's and bottleneck's scripts: ioredis defines them with defineCommand (name → sha).
  const define = Redis.prototype.defineCommand
  Redis.prototype.defineCommand = function (name, definition) {
    const r = define.call(this, name, definition)
    const sha = this.scriptsSet?.[name]?.sha ?? this.scripts?.[name]?.sha
    if (sha) shas.set(sha, name)
    return r
  }
  const pg = require('pg')
  const query = pg.Client.prototype.query
  pg.Client.prototype.query = function (config, values, callback) {
    const text = typeof config === 'string' ? config : config?.name ? `prepared:${config.name}` : (config?.text ?? '?')
    bump(counts.pg, text.startsWith('prepared:') ? text : text.replace(/\s+/g, ' ').trim().slice(0, 60))
    return query.call(this, config, values, callback)
  }
  process.on('exit', () => {
    try {
      mkdirSync(dir, { recursive: true })
      writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ argv: process.argv.slice(1), ...counts }))
    } catch {
      // best effort
    }
  })
}
