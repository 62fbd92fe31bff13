import type { FastifyReply } from 'fastify';
import Type, { type TSchema } from 'typebox';
import {
  API_PREFIX,
  CodedError,
  HistoryQuery,
  HistoryResponse,
  isProvinceCode,
  ProvinceHistoryQuery,
  ProvinceHistoryResponse,
  type HistoryFormat,
} from '@citypulse/contracts';
import { csvFilename, HISTORY_DEFAULTS, historyCsv, parseTime, queryHistory, queryProvinceHistory, resolveFields, resolveMetrics } from '../history.js';
import { requireProvince } from '../rights.js';
import { ERROR_RESPONSES, principalOf, type RouteContext } from './context.js';
import { DeviceParams, findVisibleDevice } from './devices.js';

/** JSON by default; `format=csv` gives the same rows as a download. Both go in the OpenAPI document. */
const jsonOrCsv = <T extends TSchema>(json: T) => ({
  description: 'JSON, or CSV with format=csv',
  content: {
    'application/json': { schema: json },
    'text/csv': { schema: Type.String({ description: 'header row `time,<field>_<aggregate>…`, one row per window, times ISO 8601 UTC, empty cell for no value' }) },
  },
});

const ProvinceParams = Type.Object(
  // Not a pattern: anything that is not one of the 34 codes gets E_PROVINCE, whatever it looks like.
  { code: Type.String({ description: 'two-digit province code, e.g. 01' }) },
  { additionalProperties: false },
);

/** The requested range in epoch ms: `to` defaults to now. E_BAD_REQUEST for a time that does not parse. */
function requestedRange(query: { readonly from: string; readonly to?: string | undefined }, nowMs: number): { fromMs: number; toMs: number } {
  return { fromMs: parseTime('from', query.from), toMs: query.to === undefined ? nowMs : parseTime('to', query.to) };
}

/** InfluxDB's failures as E_UPSTREAM (503); our own coded errors pass through. */
async function upstream<T>(what: string, query: () => Promise<T>): Promise<T> {
  try {
    return await query();
  } catch (err) {
    if (err instanceof CodedError) throw err;
    throw new CodedError('E_UPSTREAM', `InfluxDB did not answer the ${what} query; try again shortly`, { cause: err });
  }
}

function sendCsv(reply: FastifyReply, filename: string, body: string): FastifyReply {
  // The name is made of [A-Za-z0-9_-.] only (csvFilename), so it needs no quoting rules beyond the quotes.
  return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="${filename}"`).send(body);
}

const wantsCsv = (format: HistoryFormat | undefined) => format === 'csv';

/**
 * History (issue 6): a device's fields and a province's aggregates over a range, in windows, from
 * the roll-ups and the raw tail (history.ts), as JSON or CSV. Both routes count against the
 * expensive-query rate limit and stay within the operator's provinces.
 */
export function historyRoutes({ app, registry, influx, expensive }: RouteContext): void {
  app.get(
    `${API_PREFIX}/devices/:id/history`,
    {
      config: { rateLimit: expensive },
      schema: {
        tags: ['history'],
        summary: "A device's history over a range, aggregated into windows (at most maxPoints per field)",
        description:
          'Windows below 1 min are read from raw readings, from 1 min from the 1-minute roll-ups, from 1 h from the 1-hour roll-ups; the newest part, not rolled up yet, from raw. `sources` says which was read for which part.',
        params: DeviceParams,
        querystring: HistoryQuery,
        response: { 200: jsonOrCsv(HistoryResponse), ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const device = findVisibleDevice(registry, principalOf(request), request.params.id);
      const q = request.query;
      const nowMs = Date.now();
      const { fromMs, toMs } = requestedRange(q, nowMs);
      const fields = resolveFields(device.domain, q.fields);
      const aggregate = q.aggregate ?? 'mean';
      const history = await upstream('history', () =>
        queryHistory(influx, { deviceId: device.id, domain: device.domain, fromMs, toMs, fields, aggregate, maxPoints: q.maxPoints ?? HISTORY_DEFAULTS.maxPoints, nowMs }),
      );
      if (!wantsCsv(q.format)) return history;
      const columns = history.fields.map((field) => ({ key: field, header: `${field}_${aggregate}` }));
      return sendCsv(reply, csvFilename(`${device.id}_${aggregate}`, history.from, history.to), historyCsv(columns, history.points));
    },
  );

  app.get(
    `${API_PREFIX}/provinces/:code/history`,
    {
      config: { rateLimit: expensive },
      schema: {
        tags: ['history'],
        summary: "A province's VN_AQI, road congestion and grid load over a range, in windows",
        description:
          "Each metric is aggregated over every reading of the province's devices in the window, from the roll-ups and the raw tail as for a device's history. See the `metrics` parameter for the columns and what they mean.",
        params: ProvinceParams,
        querystring: ProvinceHistoryQuery,
        response: { 200: jsonOrCsv(ProvinceHistoryResponse), ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const { code } = request.params;
      if (!isProvinceCode(code)) throw new CodedError('E_PROVINCE', `province ${JSON.stringify(code.slice(0, 16))} is not one of the 34 codes`);
      requireProvince(principalOf(request), code);
      const q = request.query;
      const nowMs = Date.now();
      const { fromMs, toMs } = requestedRange(q, nowMs);
      const metrics = resolveMetrics(q.metrics);
      const history = await upstream('province history', () =>
        queryProvinceHistory(influx, { province: code, fromMs, toMs, metrics, maxPoints: q.maxPoints ?? HISTORY_DEFAULTS.maxPoints, nowMs }),
      );
      if (!wantsCsv(q.format)) return history;
      const columns = history.fields.map((field) => ({ key: field, header: field }));
      return sendCsv(reply, csvFilename(`province-${code}`, history.from, history.to), historyCsv(columns, history.points));
    },
  );
}
