import Type from 'typebox';
import {
  API_PREFIX,
  CodedError,
  DeviceId,
  DeviceList,
  DevicesQuery,
  DeviceView,
  isProvinceCode,
  LatestReading,
  PROVINCE_BOUNDARIES,
  RejectedList,
  RejectedQuery,
} from '@citypulse/contracts';
import type { DeviceRecord, DeviceRegistry } from '@citypulse/broker/registry';
import { DEAD_LETTER_DEFAULTS, queryDeadLetters } from '../dead-letters.js';
import { parseTime } from '../history.js';
import { canSeeProvince, requireProvince, type Principal } from '../rights.js';
import type { LiveState } from '../live.js';
import { ERROR_RESPONSES, principalOf, type RouteContext } from './context.js';

export const DEVICE_LIST_DEFAULTS = { limit: 1000 } as const;

/** Lower case without Vietnamese diacritics, so "ha noi" finds "Hà Nội". */
export function foldText(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').replace(/đ/g, 'd').replace(/Đ/g, 'D').toLowerCase();
}

/** A registered device as the api shows it: its record, live status and latest reading. */
export function deviceView(device: DeviceRecord, live: LiveState): DeviceView {
  const latest = live.latest(device.id);
  return {
    id: device.id,
    name: device.name,
    province: device.province,
    domain: device.domain,
    kind: device.kind,
    location: [device.location[0], device.location[1]],
    enabled: device.enabled,
    status: live.status(device.id)?.state ?? 'unknown',
    latest: latest ? { ts: latest.ts, seq: latest.seq, values: latest.values, derived: latest.derived as Record<string, number | boolean | string>, state: latest.state } : null,
  };
}

/** The `:id` of the device routes. */
export const DeviceParams = Type.Object({ id: DeviceId }, { additionalProperties: false });

/** The device, if the principal may see it: E_NOT_FOUND for no such device, E_FORBIDDEN outside the principal's provinces. */
export function findVisibleDevice(registry: DeviceRegistry, principal: Principal, id: string): DeviceRecord {
  const device = registry.device(id);
  if (!device) throw new CodedError('E_NOT_FOUND', `no device "${id}"`);
  if (!canSeeProvince(principal, device.province)) throw new CodedError('E_FORBIDDEN', `device "${id}" is in province ${device.province}, outside the provinces "${principal.username}" may see`);
  return device;
}

/** Provinces, devices, a device's latest reading and rejected messages (history: history.ts): what every role may read, within its provinces. */
export function deviceRoutes({ app, registry, live, influx, expensive }: RouteContext): void {
  app.get(
    `${API_PREFIX}/provinces`,
    { schema: { tags: ['map'], summary: "The provinces in scope as GeoJSON: boundaries, registered devices and current KPIs (ingest's latest province summary, null before the first)" } },
    async (request, reply) => {
      const principal = principalOf(request);
      const counts = new Map<string, number>();
      for (const d of registry.devices) counts.set(d.province, (counts.get(d.province) ?? 0) + 1);
      reply.type('application/geo+json');
      return {
        type: 'FeatureCollection',
        features: PROVINCE_BOUNDARIES.features
          .filter((f) => canSeeProvince(principal, f.properties.code))
          .map((f) => ({ ...f, properties: { ...f.properties, devices: counts.get(f.properties.code) ?? 0, kpis: live.summary(f.properties.code) ?? null } })),
      };
    },
  );

  const view = (device: DeviceRecord) => deviceView(device, live);

  app.get(
    `${API_PREFIX}/devices`,
    { schema: { tags: ['devices'], summary: 'Devices in scope, filtered and paged (ordered by id)', querystring: DevicesQuery, response: { 200: DeviceList, ...ERROR_RESPONSES } } },
    async (request) => {
      const principal = principalOf(request);
      const { province, domain, status, q } = request.query;
      if (province !== undefined && !isProvinceCode(province)) throw new CodedError('E_PROVINCE', `province "${province}" is not one of the 34 codes`);
      if (province !== undefined) requireProvince(principal, province);
      const text = q === undefined ? undefined : foldText(q.trim());
      const matching = registry.devices
        .filter(
          (d) =>
            d.enabled &&
            canSeeProvince(principal, d.province) &&
            (province === undefined || d.province === province) &&
            (domain === undefined || d.domain === domain) &&
            (status === undefined || (live.status(d.id)?.state ?? 'unknown') === status) &&
            (text === undefined || text === '' || d.id.includes(text) || foldText(d.name).includes(text)),
        )
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const limit = request.query.limit ?? DEVICE_LIST_DEFAULTS.limit;
      const offset = request.query.offset ?? 0;
      return { devices: matching.slice(offset, offset + limit).map(view), total: matching.length, limit, offset };
    },
  );

  const deviceParams = DeviceParams;
  const findDevice = (principal: Principal, id: string): DeviceRecord => findVisibleDevice(registry, principal, id);

  app.get(
    `${API_PREFIX}/devices/:id`,
    { schema: { tags: ['devices'], summary: 'One device with its status and latest reading', params: deviceParams, response: { 200: DeviceView, ...ERROR_RESPONSES } } },
    async (request) => view(findDevice(principalOf(request), request.params.id)),
  );

  app.get(
    `${API_PREFIX}/devices/:id/latest`,
    { schema: { tags: ['devices'], summary: "A device's latest reading (404 E_NOT_FOUND before its first)", params: deviceParams, response: { 200: LatestReading, ...ERROR_RESPONSES } } },
    async (request) => {
      const device = view(findDevice(principalOf(request), request.params.id));
      if (!device.latest) throw new CodedError('E_NOT_FOUND', `device "${device.id}" has sent no reading yet`);
      return device.latest;
    },
  );

  // What ingest refused from this device, and why: the dead-letter records, counted by code.
  app.get(
    `${API_PREFIX}/devices/:id/rejected`,
    {
      config: { rateLimit: expensive },
      schema: { tags: ['devices'], summary: 'What ingest refused from this device, and why', params: deviceParams, querystring: RejectedQuery, response: { 200: RejectedList, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const device = findDevice(principalOf(request), request.params.id);
      const q = request.query;
      const toMs = q.to === undefined ? Date.now() : parseTime('to', q.to);
      const fromMs = q.from === undefined ? toMs - DEAD_LETTER_DEFAULTS.rangeMs : parseTime('from', q.from);
      try {
        return await queryDeadLetters(influx, { deviceId: device.id, fromMs, toMs, code: q.code, limit: q.limit ?? DEAD_LETTER_DEFAULTS.limit });
      } catch (err) {
        if (err instanceof CodedError) throw err;
        throw new CodedError('E_UPSTREAM', 'InfluxDB did not answer the dead-letter query; try again shortly', { cause: err });
      }
    },
  );
}
