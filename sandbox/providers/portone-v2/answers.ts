/** PortOne V2's error answers: `{type, message}`, the HTTP status following the type. */
import type { SimResponse } from '../../sim.ts'

export const error = (status: number, type: string, message: string, extra: object = {}): SimResponse => ({
  status,
  body: { type, message, ...extra },
})

export const invalid = (message: string) => error(400, 'INVALID_REQUEST', message)

export const unauthorized = (message = '인증 정보가 올바르지 않습니다.') => error(401, 'UNAUTHORIZED', message)

export const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v)
