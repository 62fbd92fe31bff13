import type { FastifyRequest } from 'fastify';
import { CodedError, ErrorBody, type AlertAck, type AlertView } from '@citypulse/contracts';
import type { DeviceRegistry } from '@citypulse/broker/registry';
import type { Influx } from '@citypulse/infra';
import type { ApiFastify } from '../app.js';
import type { AlertBook } from '../alerts.js';
import type { AuditLog } from '../audit.js';
import type { LiveState } from '../live.js';
import type { OperatorStore } from '../operators.js';
import type { Principal } from '../rights.js';
import type { SessionSigner } from '../sessions.js';

/** The operator behind a request: who, their rights as of now, and which login. */
export interface AuthPrincipal extends Principal {
  readonly sid: string;
  /** The operator's tokenVersion the session was issued under. */
  readonly version: number;
  readonly expiresAt: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: AuthPrincipal | null;
  }
}

/** Rate limit of the routes that make InfluxDB work (history, exports, dead letters), per operator. */
export interface RateLimit {
  readonly max: number;
  readonly timeWindow: number;
}

export interface RouteContext {
  readonly app: ApiFastify;
  readonly registry: DeviceRegistry;
  readonly operators: OperatorStore;
  readonly sessions: SessionSigner;
  readonly live: LiveState;
  readonly alerts: AlertBook;
  readonly influx: Influx;
  /** Sends an acknowledgement to the screens in the alert's rooms. */
  readonly onAlertAck: (ack: AlertAck, alert: AlertView) => void;
  readonly audit: AuditLog;
  readonly expensive: RateLimit;
  /** The alert rules file ingest evaluates (INGEST_RULES_FILE). */
  readonly rulesFile: string;
  readonly cookieSecure: boolean;
}

/** Error responses every route may give, for the OpenAPI document. */
export const ERROR_RESPONSES = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody, 503: ErrorBody } as const;

/** The principal of a route behind the session check (every /api route but login and logout). */
export function principalOf(request: FastifyRequest): AuthPrincipal {
  if (!request.principal) throw new CodedError('E_UNAUTHORIZED', 'login required: POST /api/v1/auth/login');
  return request.principal;
}
