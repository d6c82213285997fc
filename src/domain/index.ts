/** The pure domain: Korean cash-receipt rules (docs/rules.md). No I/O, no clock, no env. */
export * from './result.ts'
export * from './identifier.ts'
export * from './purpose.ts'
export * from './money.ts'
export * from './dates.ts'
export * from './eligibility.ts'
export * from './transaction.ts'
