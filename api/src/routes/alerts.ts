import Type from 'typebox';
import {
  AckAlertBody,
  ActiveAlertList,
  ActiveAlertsQuery,
  AlertAck,
  AlertHistory,
  AlertHistoryQuery,
  AlertView,
  API_PREFIX,
  CodedError,
  PROVINCE_CODES,
  type AlertAck as AlertAckType,
  type AlertView as AlertViewType,
} from '@citypulse/contracts';
import { loadAlertAcks, loadAlertEvents } from '@citypulse/ingest/storage';
import { parseTime } from '../history.js';
import { requireProvince, requireRole, visibleProvinces } from '../rights.js';
import { ERROR_RESPONSES, principalOf, type RouteContext } from './context.js';

export const ALERT_HISTORY_DEFAULTS = { rangeMs: 86_400_000, maxRangeMs: 366 * 86_400_000, limit: 500 } as const;

/**
 * Alerts: the active ones (from memory), the history of raised and cleared events (from
 * InfluxDB), and acknowledgements (operators, in scope; stored, audited, sent to every screen).
 */
export function alertRoutes({ app, alerts, influx, audit, expensive, onAlertAck }: RouteContext): void {
  /** The provinces a request covers: the one asked for (checked against the scope), else the whole scope. */
  const provincesOf = (request: Parameters<typeof principalOf>[0], province: string | undefined): string[] => {
    const principal = principalOf(request);
    if (province === undefined) return visibleProvinces(principal, PROVINCE_CODES);
    requireProvince(principal, province);
    return [province];
  };

  app.get(
    `${API_PREFIX}/alerts/active`,
    { schema: { tags: ['alerts'], summary: 'Alerts raised and not yet cleared, in scope, newest first', querystring: ActiveAlertsQuery, response: { 200: ActiveAlertList, ...ERROR_RESPONSES } } },
    async (request) => {
      const { province, domain, severity, device } = request.query;
      const list = alerts.active({ provinces: provincesOf(request, province), domain, severity, device });
      return { alerts: list, total: list.length };
    },
  );

  app.get(
    `${API_PREFIX}/alerts`,
    {
      config: { rateLimit: expensive },
      schema: { tags: ['alerts'], summary: 'Alert events (raised and cleared) stored in a range, newest first, with acknowledgements', querystring: AlertHistoryQuery, response: { 200: AlertHistory, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const q = request.query;
      const provinces = provincesOf(request, q.province);
      const toMs = q.to === undefined ? Date.now() : parseTime('to', q.to);
      const fromMs = q.from === undefined ? Math.max(0, toMs - ALERT_HISTORY_DEFAULTS.rangeMs) : parseTime('from', q.from);
      if (toMs <= fromMs) throw new CodedError('E_BAD_REQUEST', '"to" must be after "from"');
      if (toMs - fromMs > ALERT_HISTORY_DEFAULTS.maxRangeMs) throw new CodedError('E_BAD_REQUEST', 'range is longer than one year; narrow it');
      try {
        const events = await loadAlertEvents(influx, provinces, fromMs, { until: toMs, limit: q.limit ?? ALERT_HISTORY_DEFAULTS.limit, device: q.device, domain: q.domain, severity: q.severity, state: q.state });
        // An acknowledgement comes after its alert was raised, possibly after "to".
        const acks = await loadAlertAcks(influx, provinces, fromMs);
        const ackById = new Map<string, AlertAckType>();
        for (const ack of acks) if (!ackById.has(ack.id)) ackById.set(ack.id, ack);
        const views: AlertViewType[] = events.map((event) => ({ ...event, ack: ackById.get(event.id) ?? null })).reverse();
        return { from: fromMs, to: toMs, events: views };
      } catch (err) {
        if (err instanceof CodedError) throw err;
        throw new CodedError('E_UPSTREAM', 'InfluxDB did not answer the alert history query; try again shortly', { cause: err });
      }
    },
  );

  app.post(
    `${API_PREFIX}/alerts/ack`,
    {
      schema: {
        tags: ['alerts'],
        summary: 'Acknowledge an active alert with a note (operator role)',
        body: AckAlertBody,
        response: { 200: Type.Object({ alert: AlertView, ack: AlertAck }), ...ERROR_RESPONSES, 409: ERROR_RESPONSES[400] },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      requireRole(principal, 'operator', 'acknowledging alerts');
      const { id, note = '' } = request.body;
      const alert = alerts.get(id);
      if (alert) requireProvince(principal, alert.province);
      const result = await alerts.acknowledge(id, principal.username, note);
      await audit.record({ operator: principal.username, action: 'alert.ack', target: id, detail: { province: result.ack.province, device: result.ack.deviceId, note }, ip: request.ip });
      onAlertAck(result.ack, result.alert);
      return result;
    },
  );
}
