import type { RejectionCode } from './errors.js';

/** A rejection every boundary reports the same way: a stable code and a message that says what to fix. */
export interface Rejection {
  readonly code: RejectionCode;
  readonly message: string;
}

export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: Rejection };

export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

export function fail<T = never>(code: RejectionCode, message: string): Result<T> {
  return { ok: false, error: { code, message } };
}
