import { DEVICE_CHANNELS, isProvinceCode, OPS_CHANNELS, OPS_ROOT, parseDeviceTopic, TOPIC_FILTERS, TOPIC_ROOT, type DeviceChannel, type ParsedDeviceTopic } from '@citypulse/contracts';
import type { DeviceRecord, Principal, ServiceRole } from './registry.js';

/**
 * Who may publish and subscribe where. Devices: publish only their own telemetry and status,
 * subscribe only their own command topic. Services get what their role needs.
 */
export type AclDecision = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

const ALLOW: AclDecision = { allowed: true };

const SERVICE_SUBSCRIBE: Record<ServiceRole, readonly string[]> = {
  ingest: [TOPIC_FILTERS.allTelemetry, TOPIC_FILTERS.allStatus],
  api: [TOPIC_FILTERS.allTelemetry, TOPIC_FILTERS.allStatus, `${OPS_ROOT}/#`],
  tools: [`${TOPIC_ROOT}/#`, `${OPS_ROOT}/#`, '$SYS/#'],
  gateway: [], // only the command topics of its own devices, checked one by one
};

/** Looks a device up in the registry (a gateway's rights depend on which devices name it). */
export type DeviceLookup = (id: string) => DeviceRecord | undefined;

const NO_DEVICES: DeviceLookup = () => undefined;

/** Channels a device may publish to; commands flow only towards it. */
const DEVICE_PUBLISH: ReadonlySet<DeviceChannel> = new Set(['telemetry', 'status']);

export function canPublish(principal: Principal, topic: string, retain: boolean, lookup: DeviceLookup = NO_DEVICES): AclDecision {
  const parsed = parseDeviceTopic(topic);
  if (principal.type === 'service') {
    const { role, id } = principal.service;
    // Tools replay recorded device traffic into the broker; ingest and api never publish device topics.
    if (role === 'tools' && parsed.ok && parsed.value.channel !== 'commands') return ALLOW;
    if (role === 'api' && parsed.ok && parsed.value.channel === 'commands') return ALLOW;
    // ingest publishes alert events and province summaries (ops/{province}/alerts|summary).
    if (role === 'ingest' && isOpsTopic(topic)) return ALLOW;
    if (role === 'gateway' && parsed.ok) {
      const device = lookup(parsed.value.deviceId);
      if (device?.gateway !== id) return { allowed: false, reason: `gateway ${id} may publish only for devices registered behind it, not ${parsed.value.deviceId}` };
      if (!device.enabled) return { allowed: false, reason: `device ${device.id} is disabled` };
      return devicePublish(device, parsed.value, retain);
    }
    return { allowed: false, reason: `service role ${role} may not publish to ${topic}` };
  }
  if (!parsed.ok) return { allowed: false, reason: parsed.error.message };
  return devicePublish(principal.device, parsed.value, retain);
}

function isOpsTopic(topic: string): boolean {
  const [root, province, channel, ...rest] = topic.split('/');
  return root === OPS_ROOT && rest.length === 0 && province !== undefined && isProvinceCode(province) && (OPS_CHANNELS as readonly string[]).includes(channel ?? '');
}

function devicePublish(device: DeviceRecord, t: ParsedDeviceTopic, retain: boolean): AclDecision {
  if (t.deviceId !== device.id || t.province !== device.province || t.domain !== device.domain) {
    return { allowed: false, reason: `device ${device.id} may publish only under ${TOPIC_ROOT}/${device.province}/${device.domain}/${device.id}/` };
  }
  if (!DEVICE_PUBLISH.has(t.channel)) return { allowed: false, reason: `devices may not publish to their ${t.channel} topic` };
  // Only the status topic is retained (it is also the last will); a retained reading would replay stale data forever.
  if (retain && t.channel !== 'status') return { allowed: false, reason: 'only the status topic may be retained' };
  return ALLOW;
}

export function canSubscribe(principal: Principal, filter: string, lookup: DeviceLookup = NO_DEVICES): AclDecision {
  if (principal.type === 'service' && principal.service.role === 'gateway') {
    const parsed = parseDeviceTopic(filter);
    const device = parsed.ok ? lookup(parsed.value.deviceId) : undefined;
    if (parsed.ok && parsed.value.channel === 'commands' && device?.gateway === principal.service.id && device.province === parsed.value.province && device.domain === parsed.value.domain) {
      return ALLOW;
    }
    return { allowed: false, reason: `gateway ${principal.service.id} may subscribe only to the command topics of its own devices` };
  }
  if (principal.type === 'service') {
    const allowed = SERVICE_SUBSCRIBE[principal.service.role].some((granted) => filterWithin(filter, granted));
    return allowed ? ALLOW : { allowed: false, reason: `service role ${principal.service.role} may not subscribe to ${filter}` };
  }
  const parsed = parseDeviceTopic(filter);
  const device = principal.device;
  if (parsed.ok && parsed.value.channel === 'commands' && parsed.value.deviceId === device.id && parsed.value.province === device.province && parsed.value.domain === device.domain) {
    return ALLOW;
  }
  return { allowed: false, reason: `device ${device.id} may subscribe only to its own ${DEVICE_CHANNELS[2]} topic` };
}

/**
 * True when every topic matched by `filter` is also matched by `granted`. Checked level by level:
 * a wildcard in `filter` needs the same or a wider wildcard in `granted`.
 */
export function filterWithin(filter: string, granted: string): boolean {
  const f = filter.split('/');
  const g = granted.split('/');
  for (let i = 0; i < f.length; i++) {
    const gl = g[i];
    const fl = f[i];
    if (gl === '#') return true;
    if (gl === undefined || fl === '#') return false;
    if (gl === '+') continue;
    if (fl === '+' || fl !== gl) return false;
  }
  return f.length === g.length;
}
