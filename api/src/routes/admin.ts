import Type from 'typebox';
import { API_PREFIX, AuditList, AuditQuery, CreateOperatorBody, OperatorList, OperatorView, UpdateOperatorBody, Username } from '@citypulse/contracts';
import { parseTime } from '../history.js';
import { requireRole } from '../rights.js';
import { ERROR_RESPONSES, principalOf, type RouteContext } from './context.js';

export const AUDIT_DEFAULTS = { rangeMs: 7 * 86_400_000, limit: 200 } as const;

/** Operator accounts and the audit log: admins only. */
export function adminRoutes({ app, operators, audit }: RouteContext): void {
  const admin = (request: Parameters<typeof principalOf>[0], action: string) => {
    const principal = principalOf(request);
    requireRole(principal, 'admin', action);
    return principal;
  };
  const errors = { ...ERROR_RESPONSES, 409: ERROR_RESPONSES[400] };
  const usernameParams = Type.Object({ username: Username }, { additionalProperties: false });

  app.get(`${API_PREFIX}/operators`, { schema: { tags: ['admin'], summary: 'Operator accounts (never their password hashes)', response: { 200: OperatorList, ...errors } } }, async (request) => {
    admin(request, 'listing operators');
    return { operators: operators.list() };
  });

  app.post(
    `${API_PREFIX}/operators`,
    { schema: { tags: ['admin'], summary: 'Create an operator account', body: CreateOperatorBody, response: { 201: OperatorView, ...errors } } },
    async (request, reply) => {
      const principal = admin(request, 'creating operators');
      const { username, role, password, provinces } = request.body;
      const created = await operators.create(username, role, password, provinces ?? null);
      await audit.record({ operator: principal.username, action: 'operator.create', target: username, detail: { role, provinces: provinces ?? null }, ip: request.ip });
      return reply.status(201).send(created);
    },
  );

  app.patch(
    `${API_PREFIX}/operators/:username`,
    { schema: { tags: ['admin'], summary: "Change an operator's role, provinces, password or disabled flag", params: usernameParams, body: UpdateOperatorBody, response: { 200: OperatorView, ...errors } } },
    async (request) => {
      const principal = admin(request, 'changing operators');
      const changes = request.body;
      const updated = await operators.update(request.params.username, changes);
      const detail = { ...changes, ...(changes.password === undefined ? {} : { password: 'changed' }) };
      await audit.record({ operator: principal.username, action: 'operator.update', target: request.params.username, detail, ip: request.ip });
      return updated;
    },
  );

  app.delete(
    `${API_PREFIX}/operators/:username`,
    { schema: { tags: ['admin'], summary: 'Delete an operator account', params: usernameParams, response: { 204: Type.Null(), ...errors } } },
    async (request, reply) => {
      const principal = admin(request, 'deleting operators');
      await operators.remove(request.params.username);
      await audit.record({ operator: principal.username, action: 'operator.delete', target: request.params.username, ip: request.ip });
      return reply.status(204).send(null);
    },
  );

  app.get(
    `${API_PREFIX}/audit`,
    { schema: { tags: ['admin'], summary: 'The audit log of operator actions, newest first', querystring: AuditQuery, response: { 200: AuditList, ...errors } } },
    async (request) => {
      admin(request, 'reading the audit log');
      const q = request.query;
      const toMs = q.to === undefined ? Date.now() + 1 : parseTime('to', q.to);
      const fromMs = q.from === undefined ? toMs - AUDIT_DEFAULTS.rangeMs : parseTime('from', q.from);
      const entries = await audit.query({ fromMs, toMs, operator: q.operator, action: q.action, limit: q.limit ?? AUDIT_DEFAULTS.limit });
      return { from: fromMs, to: toMs, entries };
    },
  );
}
