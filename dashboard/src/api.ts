import {
  API_PREFIX,
  type AckAlertBody,
  type AlertAck,
  type AlertView,
  type DeviceList,
  type DeviceView,
  type Domain,
  type ErrorBody,
  type HistoryResponse,
  type LoginBody,
  type SessionInfo,
} from '@citypulse/contracts';

/**
 * REST client for the api (same origin; the session is the HttpOnly `cp_session` cookie, so
 * nothing here touches credentials beyond sending the login form once).
 */

/** A failed API call, carrying the stable code and message of the api's ErrorBody. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export function isUnauthorized(error: unknown): boolean {
  return error instanceof ApiError && error.status === 401;
}

async function request<T>(path: string, init: RequestInit = {}, signal?: AbortSignal): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`${API_PREFIX}${path}`, {
      ...init,
      credentials: 'same-origin',
      headers: { accept: 'application/json', ...(init.body ? { 'content-type': 'application/json' } : {}) },
      signal: signal ?? null,
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError(0, 'E_NETWORK', 'Không kết nối được máy chủ / Cannot reach the server');
  }
  const text = await response.text();
  const body: unknown = text === '' ? undefined : safeJson(text);
  if (!response.ok) {
    const error = isErrorBody(body) ? body : { code: `E_HTTP_${response.status}`, message: response.statusText || `HTTP ${response.status}` };
    throw new ApiError(response.status, error.code, error.message);
  }
  return body as T;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isErrorBody(body: unknown): body is ErrorBody {
  return typeof body === 'object' && body !== null && typeof (body as ErrorBody).code === 'string' && typeof (body as ErrorBody).message === 'string';
}

export function login(credentials: LoginBody): Promise<SessionInfo> {
  return request<SessionInfo>('/auth/login', { method: 'POST', body: JSON.stringify(credentials) });
}

export async function logout(): Promise<void> {
  await request<unknown>('/auth/logout', { method: 'POST', body: '{}' });
}

export function me(): Promise<SessionInfo> {
  return request<SessionInfo>('/auth/me');
}

export async function listDevices(filter: { province?: string; domain?: Domain } = {}): Promise<DeviceView[]> {
  const query = new URLSearchParams();
  if (filter.province) query.set('province', filter.province);
  if (filter.domain) query.set('domain', filter.domain);
  // Every page: the map draws all the devices the operator may see.
  const devices: DeviceView[] = [];
  for (;;) {
    query.set('limit', String(DEVICE_PAGE));
    query.set('offset', String(devices.length));
    const page = await request<DeviceList>(`/devices?${query.toString()}`);
    devices.push(...page.devices);
    if (page.devices.length === 0 || devices.length >= page.total) return devices;
  }
}

/** Devices per request when the dashboard loads the device list. */
const DEVICE_PAGE = 5000;

export function getDevice(id: string): Promise<DeviceView> {
  return request<DeviceView>(`/devices/${encodeURIComponent(id)}`);
}

export interface HistoryParams {
  readonly fromMs: number;
  readonly toMs?: number;
  readonly fields?: readonly string[];
  readonly aggregate?: 'mean' | 'min' | 'max' | 'count';
  readonly maxPoints?: number;
}

export function getHistory(id: string, params: HistoryParams, signal?: AbortSignal): Promise<HistoryResponse> {
  const query = new URLSearchParams({ from: String(Math.floor(params.fromMs)) });
  if (params.toMs !== undefined) query.set('to', String(Math.floor(params.toMs)));
  if (params.fields && params.fields.length > 0) query.set('fields', params.fields.join(','));
  if (params.aggregate) query.set('aggregate', params.aggregate);
  if (params.maxPoints) query.set('maxPoints', String(params.maxPoints));
  return request<HistoryResponse>(`/devices/${encodeURIComponent(id)}/history?${query.toString()}`, {}, signal);
}

/**
 * Acknowledges an active alert with a note (operator role, alert in scope). Rejects with ApiError:
 * E_CONFLICT (409) when it was already acknowledged, 403 for a viewer or an alert out of scope.
 * @returns the stored acknowledgement (apply it to the alert book; the broadcast follows).
 */
export async function acknowledgeAlert(id: string, note: string): Promise<AlertAck> {
  const body: AckAlertBody = { id, note };
  const result = await request<{ alert: AlertView; ack: AlertAck }>('/alerts/ack', { method: 'POST', body: JSON.stringify(body) });
  return result.ack;
}

export interface UiConfig {
  readonly mapboxAccessToken: string | null;
}

/** UI settings; a missing or failing endpoint means the defaults (no token: maplibre, offline). */
export async function getUiConfig(): Promise<UiConfig> {
  try {
    const config = await request<Partial<UiConfig>>('/ui-config');
    const token = config.mapboxAccessToken;
    return { mapboxAccessToken: typeof token === 'string' && token.trim() !== '' ? token.trim() : null };
  } catch (error) {
    if (isUnauthorized(error)) throw error;
    return { mapboxAccessToken: null };
  }
}
