import { readFile } from 'node:fs/promises';
import Type from 'typebox';
import { API_PREFIX, CodedError } from '@citypulse/contracts';
import { DEFAULT_RULES_FILE, parseAlertRules, writeAlertRules } from '@citypulse/ingest';
import { requireRole } from '../rights.js';
import { ERROR_RESPONSES, principalOf, type RouteContext } from './context.js';

const RulesView = Type.Object(
  {
    /** The rules file as written (YAML), comments included. */
    yaml: Type.String(),
    /** The rules as ingest reads them. */
    rules: Type.Array(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
const RulesBody = Type.Object({ yaml: Type.String({ minLength: 1, maxLength: 60_000, description: 'the whole rules file (YAML, as in ingest/alert-rules.yaml)' }) }, { additionalProperties: false });

/**
 * The alert rules ingest evaluates (INGEST_RULES_FILE): every role may read them; admins replace
 * them. A replacement is validated with ingest's own validator first (E_BAD_REQUEST lists every
 * problem with its line), written atomically, audited; ingest applies it within a second.
 */
export function ruleRoutes({ app, audit, rulesFile }: RouteContext): void {
  const current = async (): Promise<string> => {
    try {
      return await readFile(rulesFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return readFile(DEFAULT_RULES_FILE, 'utf8'); // ingest has not created it yet: the shipped rules are in force
    }
  };

  app.get(`${API_PREFIX}/alert-rules`, { schema: { tags: ['alerts'], summary: 'The alert rules in force (YAML and parsed)', response: { 200: RulesView, ...ERROR_RESPONSES } } }, async () => {
    const yaml = await current();
    return { yaml, rules: parseAlertRules(yaml, 'alert rules').rules as unknown as Record<string, unknown>[] };
  });

  app.put(
    `${API_PREFIX}/alert-rules`,
    { schema: { tags: ['admin'], summary: 'Replace the alert rules (admin); ingest applies them without a restart', body: RulesBody, response: { 200: RulesView, ...ERROR_RESPONSES } } },
    async (request) => {
      const principal = principalOf(request);
      requireRole(principal, 'admin', 'changing alert rules');
      const { yaml } = request.body;
      let rules;
      try {
        rules = await writeAlertRules(rulesFile, yaml);
      } catch (err) {
        if (err instanceof CodedError && err.code === 'E_CONFIG') throw new CodedError('E_BAD_REQUEST', err.message);
        throw err;
      }
      await audit.record({ operator: principal.username, action: 'rules.update', target: 'alert-rules', detail: { rules: rules.rules.map((r) => r.id) }, ip: request.ip });
      return { yaml, rules: rules.rules as unknown as Record<string, unknown>[] };
    },
  );
}
