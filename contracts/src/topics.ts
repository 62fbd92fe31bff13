import { isProvinceCode } from './provinces.js';
import { fail, ok, type Result } from './result.js';

/**
 * The one topic scheme of the platform. The broker's ACL, ingest, api and simulators build and
 * parse topics only through this module.
 *
 *   city/{province}/{domain}/{deviceId}/telemetry   readings (single or batch form), QoS 1
 *   city/{province}/{domain}/{deviceId}/status      retained online/offline, also the last will
 *   city/{province}/{domain}/{deviceId}/commands    commands to the device
 */
export const TOPIC_ROOT = 'city';

export const DOMAINS = ['traffic', 'environment', 'energy'] as const;
export type Domain = (typeof DOMAINS)[number];

export const DEVICE_CHANNELS = ['telemetry', 'status', 'commands'] as const;
export type DeviceChannel = (typeof DEVICE_CHANNELS)[number];

/** Device ids are lower-case, topic-safe and short: no '/', '+', '#', spaces or upper case. */
export const DEVICE_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{2,63}$/;

export interface DeviceAddress {
  readonly province: string;
  readonly domain: Domain;
  readonly deviceId: string;
}

export interface ParsedDeviceTopic extends DeviceAddress {
  readonly channel: DeviceChannel;
}

export function isDomain(value: string): value is Domain {
  return (DOMAINS as readonly string[]).includes(value);
}

export function isDeviceId(value: string): boolean {
  return DEVICE_ID_PATTERN.test(value);
}

export function deviceTopic(address: DeviceAddress, channel: DeviceChannel): string {
  return `${TOPIC_ROOT}/${address.province}/${address.domain}/${address.deviceId}/${channel}`;
}

/** Parses a concrete (wildcard-free) device topic; every way it can be wrong names the part to fix. */
export function parseDeviceTopic(topic: string): Result<ParsedDeviceTopic> {
  const parts = topic.split('/');
  if (parts.length !== 5 || parts[0] !== TOPIC_ROOT) {
    return fail('E_TOPIC', `topic "${clip(topic)}" must have the form ${TOPIC_ROOT}/{province}/{domain}/{deviceId}/{${DEVICE_CHANNELS.join('|')}}`);
  }
  const [, province = '', domain = '', deviceId = '', channel = ''] = parts;
  if (!isProvinceCode(province)) {
    return fail('E_TOPIC', `topic segment 2 "${clip(province)}" is not one of the 34 province codes (e.g. 01 for Hà Nội, 79 for Hồ Chí Minh)`);
  }
  if (!isDomain(domain)) {
    return fail('E_TOPIC', `topic segment 3 "${clip(domain)}" must be one of ${DOMAINS.join(', ')}`);
  }
  if (!isDeviceId(deviceId)) {
    return fail('E_TOPIC', `topic segment 4 "${clip(deviceId)}" is not a device id (3–64 of a-z, 0-9, '-', '_')`);
  }
  if (!(DEVICE_CHANNELS as readonly string[]).includes(channel)) {
    return fail('E_TOPIC', `topic segment 5 "${clip(channel)}" must be one of ${DEVICE_CHANNELS.join(', ')}`);
  }
  return ok({ province, domain, deviceId, channel: channel as DeviceChannel });
}

/**
 * Platform events ingest publishes for the api (not device topics; devices may not publish or
 * subscribe here):
 *
 *   ops/{province}/alerts    AlertEvent JSON, QoS 1, as rules raise and clear them
 *   ops/{province}/summary   ProvinceSummary JSON, QoS 0, retained, every few seconds
 */
export const OPS_ROOT = 'ops';
export const OPS_CHANNELS = ['alerts', 'summary'] as const;
export type OpsChannel = (typeof OPS_CHANNELS)[number];

export function opsTopic(province: string, channel: OpsChannel): string {
  return `${OPS_ROOT}/${province}/${channel}`;
}

/** Subscription filters the services use. */
export const TOPIC_FILTERS = {
  allTelemetry: `${TOPIC_ROOT}/+/+/+/telemetry`,
  allStatus: `${TOPIC_ROOT}/+/+/+/status`,
  provinceTelemetry: (province: string): string => `${TOPIC_ROOT}/${province}/+/+/telemetry`,
  provinceStatus: (province: string): string => `${TOPIC_ROOT}/${province}/+/+/status`,
  allAlerts: `${OPS_ROOT}/+/alerts`,
  allSummaries: `${OPS_ROOT}/+/summary`,
} as const;

/**
 * MQTT topic filter matching ([MQTT-4.7.1]): '+' matches one level, '#' the rest (including the
 * parent level), and topics starting with '$' never match a filter starting with a wildcard.
 */
export function topicMatchesFilter(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false; // [MQTT-4.7.2-1]
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

function clip(text: string, max = 48): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
