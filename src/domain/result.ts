/** Field-level results of the domain rules. `message` never repeats the field (the importer prints `line N: field: message`). */
export interface FieldError {
  readonly field: string
  readonly rule: string
  readonly message: string
}

export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: FieldError }

export const ok = <T>(value: T): Result<T> => ({ ok: true, value })
export const err = (field: string, rule: string, message: string): Result<never> => ({ ok: false, error: { field, rule, message } })
