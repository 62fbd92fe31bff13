import Type from 'typebox';
import { API_PREFIX, CodedError, LoginBody, OperatorRoleName, ProvinceScope, SessionInfo } from '@citypulse/contracts';
import { SESSION_COOKIE } from '../sessions.js';
import { ERROR_RESPONSES, principalOf, type RouteContext } from './context.js';

/** Logins per client address and minute before E_RATE_LIMITED (each failed one costs an scrypt check). */
export const LOGIN_RATE = { max: 10, timeWindow: 60_000 } as const;

const LoginResponse = Type.Object({ username: Type.String(), role: OperatorRoleName, provinces: ProvinceScope, expiresAt: Type.Number(), token: Type.String() });

export function authRoutes({ app, operators, sessions, audit, cookieSecure }: RouteContext): void {
  const cookie = (value: string, maxAgeS: number) => `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${cookieSecure ? '; Secure' : ''}`;

  app.post(
    `${API_PREFIX}/auth/login`,
    {
      config: { rateLimit: LOGIN_RATE },
      schema: {
        tags: ['auth'],
        summary: 'Log in: sets the HttpOnly session cookie and returns the same token for Authorization: Bearer',
        security: [],
        body: LoginBody,
        response: { 200: LoginResponse, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const { username, password } = request.body;
      const operator = await operators.verify(username, password);
      if (!operator) {
        await audit.record({ operator: operators.get(username) ? username : '-', action: 'login.failed', target: username.slice(0, 64), ip: request.ip });
        throw new CodedError('E_UNAUTHORIZED', 'wrong username or password');
      }
      const { token, session } = sessions.issue(operator.username, operator.tokenVersion);
      reply.header('set-cookie', cookie(token, Math.floor(sessions.ttlMs / 1000)));
      await audit.record({ operator: operator.username, action: 'login', ip: request.ip });
      return { username: operator.username, role: operator.role, provinces: operator.provinces && [...operator.provinces], expiresAt: session.exp, token };
    },
  );

  app.post(
    `${API_PREFIX}/auth/logout`,
    { schema: { tags: ['auth'], summary: 'Log out: this session stops working at once (on every api node sharing the data folder)', security: [], response: { 204: Type.Null() } } },
    async (request, reply) => {
      const principal = request.principal;
      if (principal) {
        await operators.revoke(principal.sid, principal.expiresAt);
        await audit.record({ operator: principal.username, action: 'logout', ip: request.ip });
      }
      reply.header('set-cookie', cookie('', 0));
      return reply.status(204).send(null);
    },
  );

  app.get(`${API_PREFIX}/auth/me`, { schema: { tags: ['auth'], summary: 'Who is logged in, with which role and provinces', response: { 200: SessionInfo, ...ERROR_RESPONSES } } }, async (request) => {
    const principal = principalOf(request);
    return { username: principal.username, role: principal.role, provinces: principal.provinces && [...principal.provinces], expiresAt: principal.expiresAt };
  });
}
