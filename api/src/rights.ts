import { CodedError } from '@citypulse/contracts';

/**
 * Who may do what. Three roles, each including the one below it:
 * - viewer: sees maps, devices, history, alerts of the provinces in scope;
 * - operator: also acknowledges alerts and runs replays;
 * - admin: also manages operators, devices and alert rules, and reads the audit log.
 * An operator may be limited to some provinces (`provinces`); `null` means all 34. The limit holds
 * on every route and every socket.io room: what is out of scope is neither listed nor served.
 */
export const OPERATOR_ROLES = ['viewer', 'operator', 'admin'] as const;
export type OperatorRole = (typeof OPERATOR_ROLES)[number];

const RANK: Readonly<Record<OperatorRole, number>> = { viewer: 0, operator: 1, admin: 2 };

export interface Principal {
  readonly username: string;
  readonly role: OperatorRole;
  /** Province codes this operator may see; null: all. */
  readonly provinces: readonly string[] | null;
}

export function isOperatorRole(value: unknown): value is OperatorRole {
  return typeof value === 'string' && (OPERATOR_ROLES as readonly string[]).includes(value);
}

export function hasRole(principal: Principal, role: OperatorRole): boolean {
  return RANK[principal.role] >= RANK[role];
}

/** Throws E_FORBIDDEN unless the principal has `role` (or a higher one); `action` says what was refused. */
export function requireRole(principal: Principal, role: OperatorRole, action: string): void {
  if (!hasRole(principal, role)) throw new CodedError('E_FORBIDDEN', `${action} needs the ${role} role; "${principal.username}" is a ${principal.role}`);
}

export function canSeeProvince(principal: Principal, province: string): boolean {
  return principal.provinces === null || principal.provinces.includes(province);
}

/** Throws E_FORBIDDEN when the province is outside the principal's scope. */
export function requireProvince(principal: Principal, province: string): void {
  if (!canSeeProvince(principal, province)) {
    throw new CodedError('E_FORBIDDEN', `province ${province} is outside the provinces "${principal.username}" may see (${(principal.provinces ?? []).join(', ')})`);
  }
}

/** The provinces of `requested` (all 34 when undefined) the principal may see. */
export function visibleProvinces(principal: Principal, all: readonly string[]): string[] {
  return principal.provinces === null ? [...all] : all.filter((code) => principal.provinces?.includes(code));
}
