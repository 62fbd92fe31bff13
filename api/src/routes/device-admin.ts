import Type from 'typebox';
import { API_PREFIX, CodedError, CreateDeviceBody, DeviceSecret, DeviceView, UpdateDeviceBody } from '@citypulse/contracts';
import type { NewDevice } from '@citypulse/broker/registry';
import { requireProvince, requireRole } from '../rights.js';
import { ERROR_RESPONSES, principalOf, type RouteContext } from './context.js';
import { DeviceParams, deviceView, findVisibleDevice } from './devices.js';

/**
 * Device management (admin, within the admin's provinces): register a device (its secret is
 * returned once; only the hash is kept), change its metadata, disable or enable it, rotate its
 * secret, remove it. The registry file is the one list of devices: the broker and ingest pick the
 * change up at once. Every change goes to the audit log.
 */
export function deviceAdminRoutes({ app, registry, live, audit }: RouteContext): void {
  const errors = { ...ERROR_RESPONSES, 409: ERROR_RESPONSES[400] };
  const admin = (request: Parameters<typeof principalOf>[0], action: string) => {
    const principal = principalOf(request);
    requireRole(principal, 'admin', action);
    return principal;
  };

  app.post(
    `${API_PREFIX}/devices`,
    { schema: { tags: ['admin'], summary: 'Register a device; its MQTT secret is in the answer, once', body: CreateDeviceBody, response: { 201: DeviceSecret, ...errors } } },
    async (request, reply) => {
      const principal = admin(request, 'registering devices');
      const body = request.body;
      requireProvince(principal, body.province);
      if (registry.device(body.id) || registry.service(body.id)) throw new CodedError('E_CONFLICT', `"${body.id}" is already registered; choose another id (or PATCH it)`);
      const input: NewDevice = { id: body.id, province: body.province, domain: body.domain, location: body.location, ...(body.kind ? { kind: body.kind } : {}), ...(body.name ? { name: body.name } : {}), ...(body.profile ? { profile: body.profile } : {}) };
      const [created] = await registry.upsertDevices([input], { existing: 'refuse' });
      const device = registry.device(body.id);
      if (!created?.secret || !device) throw new CodedError('E_INTERNAL', `device "${body.id}" was not registered`);
      await audit.record({ operator: principal.username, action: 'device.create', target: body.id, detail: { province: body.province, domain: body.domain }, ip: request.ip });
      return reply.status(201).send({ device: deviceView(device, live), secret: created.secret });
    },
  );

  app.patch(
    `${API_PREFIX}/devices/:id`,
    { schema: { tags: ['admin'], summary: "Change a device's name, kind, location or profile, or disable / enable it", params: DeviceParams, body: UpdateDeviceBody, response: { 200: DeviceView, ...errors } } },
    async (request) => {
      const principal = admin(request, 'changing devices');
      const device = findVisibleDevice(registry, principal, request.params.id);
      const { enabled, ...metadata } = request.body;
      if (Object.keys(metadata).length > 0) {
        const profile = metadata.profile ?? device.profile;
        const input: NewDevice = { id: device.id, province: device.province, domain: device.domain, kind: metadata.kind ?? device.kind, name: metadata.name ?? device.name, location: metadata.location ?? device.location, ...(profile ? { profile } : {}), ...(device.gateway ? { gateway: device.gateway } : {}) };
        await registry.upsertDevices([input], { existing: 'update' });
      }
      if (enabled !== undefined && enabled !== device.enabled) await registry.setEnabled(device.id, enabled);
      await audit.record({ operator: principal.username, action: 'device.update', target: device.id, detail: request.body, ip: request.ip });
      return deviceView(registry.device(device.id) ?? device, live);
    },
  );

  app.post(
    `${API_PREFIX}/devices/:id/secret`,
    { schema: { tags: ['admin'], summary: "Give a device a new MQTT secret (returned once); the old one stops working", params: DeviceParams, response: { 200: DeviceSecret, ...errors } } },
    async (request) => {
      const principal = admin(request, 'rotating device secrets');
      const device = findVisibleDevice(registry, principal, request.params.id);
      const secret = await registry.rotateSecret(device.id);
      await audit.record({ operator: principal.username, action: 'device.secret', target: device.id, ip: request.ip });
      return { device: deviceView(registry.device(device.id) ?? device, live), secret };
    },
  );

  app.delete(
    `${API_PREFIX}/devices/:id`,
    { schema: { tags: ['admin'], summary: 'Remove a device from the registry (its stored readings stay)', params: DeviceParams, response: { 204: Type.Null(), ...errors } } },
    async (request, reply) => {
      const principal = admin(request, 'removing devices');
      const device = findVisibleDevice(registry, principal, request.params.id);
      await registry.removeDevice(device.id);
      await audit.record({ operator: principal.username, action: 'device.remove', target: device.id, detail: { province: device.province }, ip: request.ip });
      return reply.status(204).send(null);
    },
  );
}
