/** Option parsers shared by the commands: a bad value is a usage error (exit 2) naming the option. */
import { InvalidArgumentError } from 'commander'
import { isValidDate } from '../domain/index.ts'

export function dateArg(v: string): string {
  if (!isValidDate(v)) throw new InvalidArgumentError(`"${v}" is not a valid YYYY-MM-DD date`)
  return v
}

export function intArg(name: string, min = 1) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < min) throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}, got "${v}"`)
    return Number(v)
  }
}
