import type { Server as HttpServer } from 'node:http';
import { Server as SocketServer, type Socket } from 'socket.io';
import { Compile } from 'typebox/compile';
import type { Logger } from 'pino';
import {
  DOMAINS,
  isDomain,
  isProvinceCode,
  ReplayControlRequest,
  ReplayStartRequest,
  SOCKET_IO_PATH,
  type AlertAck,
  type AlertView,
  type ClientToServerEvents,
  type DeviceStatusEvent,
  type Domain,
  type ProvinceSummary,
  type Rejection,
  type ReplayAck,
  type ServerToClientEvents,
} from '@citypulse/contracts';
import type { Influx } from '@citypulse/infra';
import type { AlertBook } from './alerts.js';
import type { AuditLog } from './audit.js';
import { parseTime } from './history.js';
import type { LiveState } from './live.js';
import { REPLAY_DEFAULTS, ReplaySession } from './replay.js';
import { canSeeProvince, hasRole } from './rights.js';
import type { AuthPrincipal } from './routes/context.js';

/** Live delivery knobs (units in the names). */
export const REALTIME_DEFAULTS = {
  frameIntervalMs: 500,
  heartbeatIntervalMs: 5000,
  /** A socket with more packets than this waiting to be written skips frames until it drains, then gets a snapshot. */
  maxSocketBacklog: 64,
  /** Largest socket.io message a dashboard may send (subscribe, replay controls). */
  maxClientMessageBytes: 16 * 1024,
} as const;

export interface RealtimeOptions {
  readonly server: HttpServer;
  readonly live: LiveState;
  readonly alerts: AlertBook;
  readonly influx: Influx;
  readonly audit: AuditLog;
  readonly logger: Logger;
  /** The operator behind a session token, as of now; undefined when it is not (or no longer) valid. */
  readonly authenticate: (token: string | undefined) => AuthPrincipal | undefined;
  /** The same check again for a socket's login (at every heartbeat). */
  readonly recheck: (principal: AuthPrincipal) => AuthPrincipal | undefined;
  readonly readSessionCookie: (cookieHeader: string | undefined) => string | undefined;
  readonly frameIntervalMs?: number | undefined;
  readonly maxSocketBacklog?: number | undefined;
}

interface SocketData {
  principal: AuthPrincipal;
  /** Rooms whose frames were skipped while the socket lagged: they get a snapshot when it drains. */
  resync: Set<string>;
  /** The socket's replay: while it runs, the socket gets no live frames. */
  replay: ReplaySession | undefined;
}

type CitySocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
export type CityIo = SocketServer<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

/** The room of one province's domain: what a dashboard subscribes to and what frames go to. */
const ROOM_PREFIX = 'live:';
const liveRoom = (province: string, domain: Domain): string => `${ROOM_PREFIX}${province}:${domain}`;
const roomsOfProvince = (province: string): string[] => DOMAINS.map((domain) => liveRoom(province, domain));
function parseRoom(room: string): { province: string; domain: Domain } | undefined {
  if (!room.startsWith(ROOM_PREFIX)) return undefined;
  const [province = '', domain = ''] = room.slice(ROOM_PREFIX.length).split(':');
  return isDomain(domain) ? { province, domain } : undefined;
}

const checkReplayStart = Compile(ReplayStartRequest);
const checkReplayControl = Compile(ReplayControlRequest);

export interface Realtime {
  readonly io: CityIo;
  deviceStatus(event: DeviceStatusEvent): void;
  alert(alert: AlertView): void;
  alertAck(ack: AlertAck, alert: AlertView): void;
  summary(summary: ProvinceSummary): void;
  close(): Promise<void>;
}

/**
 * socket.io for the dashboards: rooms per province and domain, a snapshot on join, coalesced
 * frames broadcast once per room (encoded once, whatever the number of screens), alert and summary
 * events as they come, a heartbeat, and replay sessions. A screen that lags skips frames and is
 * resynced with a snapshot once it drains; it never delays the others.
 */
export function attachRealtime(options: RealtimeOptions): Realtime {
  const { live, alerts, influx, audit, logger } = options;
  const io: CityIo = new SocketServer(options.server, { path: SOCKET_IO_PATH, serveClient: false, maxHttpBufferSize: REALTIME_DEFAULTS.maxClientMessageBytes });
  let replays = 0;
  const maxBacklog = options.maxSocketBacklog ?? REALTIME_DEFAULTS.maxSocketBacklog;

  io.use((socket, next) => {
    const authToken = (socket.handshake.auth as { token?: unknown }).token;
    const token = options.readSessionCookie(socket.request.headers.cookie) ?? (typeof authToken === 'string' ? authToken : undefined);
    const principal = options.authenticate(token);
    if (!principal) {
      next(Object.assign(new Error('E_UNAUTHORIZED'), { data: { code: 'E_UNAUTHORIZED', message: 'login required' } }));
      return;
    }
    socket.data.principal = principal;
    socket.data.resync = new Set();
    socket.data.replay = undefined;
    next();
  });

  const refuse = (code: Rejection['code'], message: string): { ok: false; error: Rejection } => ({ ok: false, error: { code, message } });

  /** Provinces and domains of a subscribe request, checked against the catalogue and the socket's scope. */
  const checkRooms = (socket: CitySocket, request: unknown): { provinces: string[]; domains: Domain[] } | { ok: false; error: Rejection } => {
    const body = (typeof request === 'object' && request !== null ? request : {}) as { provinces?: unknown; domains?: unknown };
    const { provinces, domains = [...DOMAINS] } = body;
    if (!Array.isArray(provinces) || provinces.length === 0 || provinces.length > 34 || !provinces.every((p): p is string => typeof p === 'string' && isProvinceCode(p))) {
      return refuse('E_BAD_REQUEST', 'provinces must be a list of 1–34 province codes, e.g. ["01","79"]');
    }
    if (!Array.isArray(domains) || domains.length === 0 || domains.length > 3 || !domains.every((d): d is Domain => typeof d === 'string' && isDomain(d))) {
      return refuse('E_BAD_REQUEST', `domains must be a list of ${DOMAINS.join(', ')} (or absent for all three)`);
    }
    const principal = socket.data.principal;
    const outside = provinces.filter((p) => !canSeeProvince(principal, p));
    if (outside.length > 0) return refuse('E_FORBIDDEN', `provinces ${outside.join(', ')} are outside the provinces "${principal.username}" may see`);
    return { provinces: [...new Set(provinces)], domains: [...new Set(domains)] };
  };

  /** The live state of the socket's rooms: after a subscribe, and when a replay ends. */
  const sendLiveState = (socket: CitySocket, rooms: readonly string[]) => {
    const provinces = new Set<string>();
    const domains = new Set<Domain>();
    for (const room of rooms) {
      const parsed = parseRoom(room);
      if (!parsed) continue;
      socket.emit('snapshot', live.snapshot(parsed.province, parsed.domain));
      provinces.add(parsed.province);
      domains.add(parsed.domain);
    }
    for (const province of provinces) {
      const summary = live.summary(province);
      if (summary) socket.emit('summary', summary);
    }
    if (provinces.size > 0) {
      const list = alerts.active({ provinces: [...provinces] }).filter((a) => domains.has(a.domain));
      socket.emit('alerts', { provinces: [...provinces], domains: [...domains], alerts: list });
    }
  };

  const endReplay = (socket: CitySocket) => {
    const replay = socket.data.replay;
    if (!replay) return;
    socket.data.replay = undefined; // before stop(): its 'stopped' state comes back here
    replays--;
    replay.stop();
    if (socket.connected) sendLiveState(socket, [...socket.rooms]);
  };

  io.on('connection', (socket) => {
    socket.on('subscribe', (request, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      const checked = checkRooms(socket, request);
      if ('ok' in checked) return reply(checked);
      const rooms = checked.provinces.flatMap((p) => checked.domains.map((d) => liveRoom(p, d)));
      void socket.join(rooms);
      reply({ ok: true, ...checked });
      if (!socket.data.replay) sendLiveState(socket, rooms);
    });
    socket.on('unsubscribe', (request, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      const checked = checkRooms(socket, request);
      if ('ok' in checked) return reply(checked);
      for (const p of checked.provinces) for (const d of checked.domains) void socket.leave(liveRoom(p, d));
      reply({ ok: true, ...checked });
    });

    socket.on('replayStart', (request, ack) => {
      const reply: (result: ReplayAck) => void = typeof ack === 'function' ? ack : () => undefined;
      const principal = socket.data.principal;
      if (!hasRole(principal, 'operator')) return reply(refuse('E_FORBIDDEN', `running a replay needs the operator role; "${principal.username}" is a ${principal.role}`));
      if (!checkReplayStart.Check(request)) {
        const problem = checkReplayStart.Errors(request)[0];
        return reply(refuse('E_BAD_REQUEST', `replay request: ${problem ? `${problem.instancePath || '(root)'} ${problem.message}` : 'invalid'}; send { from, to, speed (1–60), provinces, domains? }`));
      }
      const rooms = checkRooms(socket, request);
      if ('ok' in rooms) return reply(rooms);
      let from: number;
      let to: number;
      try {
        from = typeof request.from === 'number' ? request.from : parseTime('from', request.from);
        to = typeof request.to === 'number' ? request.to : parseTime('to', request.to);
      } catch (err) {
        return reply(refuse('E_BAD_REQUEST', (err as Error).message));
      }
      if (to <= from) return reply(refuse('E_BAD_REQUEST', '"to" must be after "from"'));
      if (to - from > REPLAY_DEFAULTS.maxRangeMs) return reply(refuse('E_BAD_REQUEST', `a replay covers at most ${REPLAY_DEFAULTS.maxRangeMs / 86_400_000} days; narrow the range`));
      if (to > Date.now() + 60_000) return reply(refuse('E_BAD_REQUEST', 'a replay ends in the past; "to" is in the future'));
      if (!socket.data.replay && replays >= REPLAY_DEFAULTS.maxSessions) return reply(refuse('E_RATE_LIMITED', `${REPLAY_DEFAULTS.maxSessions} replays are running on this server; try again when one ends`));
      endReplay(socket);
      const session = new ReplaySession(
        influx,
        {
          frame: (frame) => socket.emit('frame', frame),
          snapshot: (frame) => socket.emit('snapshot', frame),
          state: (state) => {
            socket.emit('replayState', state);
            if (state.state === 'stopped' && socket.data.replay === session) endReplay(socket);
          },
        },
        { from, to, speed: request.speed ?? 1, provinces: rooms.provinces, domains: rooms.domains },
        logger,
      );
      socket.data.replay = session;
      replays++;
      void audit.record({ operator: principal.username, action: 'replay.start', detail: { from, to, speed: request.speed ?? 1, provinces: rooms.provinces }, ip: socket.handshake.address });
      session.start().then(
        (state) => reply({ ok: true, replay: state }),
        (err: unknown) => reply(refuse('E_UPSTREAM', `replay could not start: ${(err as Error).message}`)),
      );
    });

    socket.on('replayControl', (request, ack) => {
      const reply: (result: ReplayAck) => void = typeof ack === 'function' ? ack : () => undefined;
      const session = socket.data.replay;
      if (!checkReplayControl.Check(request)) return reply(refuse('E_BAD_REQUEST', 'replay control: send { action: "pause" | "resume" | "stop" }, { action: "seek", at }, or { action: "speed", speed (1–60) }'));
      if (!session) return reply(refuse('E_NOT_FOUND', 'no replay is running on this connection; start one with replayStart'));
      switch (request.action) {
        case 'pause':
          return reply({ ok: true, replay: session.pause() });
        case 'resume':
          return reply({ ok: true, replay: session.resume() });
        case 'speed':
          return reply({ ok: true, replay: session.setSpeed(request.speed) });
        case 'stop': {
          const state = session.state();
          endReplay(socket);
          return reply({ ok: true, replay: { ...state, state: 'stopped' } });
        }
        case 'seek': {
          let at: number;
          try {
            at = typeof request.at === 'number' ? request.at : parseTime('at', request.at);
          } catch (err) {
            return reply(refuse('E_BAD_REQUEST', (err as Error).message));
          }
          session.seek(at).then(
            (state) => reply({ ok: true, replay: state }),
            (err: unknown) => reply(refuse('E_BAD_REQUEST', (err as Error).message)),
          );
          return undefined;
        }
      }
    });

    socket.on('disconnect', () => endReplay(socket));
  });

  const backlog = (socket: CitySocket) => (socket.conn as unknown as { writeBuffer?: unknown[] }).writeBuffer?.length ?? 0;

  const sendFrames = () => {
    // Which screens lag, as of the start of this tick: engine.io holds every packet after the first
    // of a tick until that write completes, so a backlog read mid-tick would count this tick's own
    // frames (a screen watching all 102 rooms would look lagging every time).
    const lagging = new Set<string>();
    for (const [id, socket] of io.sockets.sockets) if (backlog(socket) > maxBacklog) lagging.add(id);
    // Screens that lagged and have drained since: the whole state of the rooms they missed.
    for (const [id, socket] of io.sockets.sockets) {
      if (socket.data.resync.size === 0 || socket.data.replay || lagging.has(id)) continue;
      for (const room of socket.data.resync) {
        const parsed = parseRoom(room);
        if (parsed && socket.rooms.has(room)) socket.emit('snapshot', live.snapshot(parsed.province, parsed.domain));
      }
      socket.data.resync.clear();
    }
    for (const frame of live.drainFrames()) {
      const room = liveRoom(frame.province, frame.domain);
      const members = io.sockets.adapter.rooms.get(room);
      if (!members) continue;
      // Sockets that get no broadcast this time: replaying, or lagging (resynced once drained).
      const skip: string[] = [];
      for (const id of members) {
        const socket = io.sockets.sockets.get(id);
        if (!socket) continue;
        if (socket.data.replay) {
          skip.push(id);
        } else if (socket.data.resync.size > 0 || lagging.has(id)) {
          socket.data.resync.add(room);
          skip.push(id);
        }
      }
      // One broadcast per room: encoded once for every screen in it.
      if (skip.length === 0) io.to(room).emit('frame', frame);
      else if (skip.length < members.size) io.to(room).except(skip).emit('frame', frame);
    }
    // A replaying screen that lags holds its replay (the clock jumps on once it drains, frames coalesced).
    for (const [id, socket] of io.sockets.sockets) if (!lagging.has(id)) socket.data.replay?.tick();
  };
  const frameTimer = setInterval(sendFrames, options.frameIntervalMs ?? REALTIME_DEFAULTS.frameIntervalMs);

  const heartbeatTimer = setInterval(() => {
    // A session logged out, an account disabled or given a new password: its sockets close too.
    for (const socket of io.sockets.sockets.values()) {
      const current = options.recheck(socket.data.principal);
      if (!current) {
        socket.disconnect(true);
        continue;
      }
      // Rights changed since the socket joined: leave the rooms now out of scope; a replay ends
      // when its operator may no longer run one.
      socket.data.principal = current;
      for (const room of socket.rooms) {
        const parsed = parseRoom(room);
        if (parsed && !canSeeProvince(current, parsed.province)) void socket.leave(room);
      }
      const replay = socket.data.replay;
      if (replay && (!hasRole(current, 'operator') || replay.state().provinces.some((p) => !canSeeProvince(current, p)))) endReplay(socket);
    }
    io.emit('heartbeat', { serverTime: Date.now() });
  }, REALTIME_DEFAULTS.heartbeatIntervalMs);

  return {
    io,
    deviceStatus: (event) => void io.to(liveRoom(event.province, event.domain)).emit('deviceStatus', event),
    alert: (alert) => void io.to(liveRoom(alert.province, alert.domain)).emit('alert', alert),
    alertAck: (ack, alert) => void io.to(liveRoom(alert.province, alert.domain)).emit('alertAck', ack),
    summary: (summary) => void io.to(roomsOfProvince(summary.province)).emit('summary', summary),
    async close() {
      clearInterval(frameTimer);
      clearInterval(heartbeatTimer);
      for (const socket of io.sockets.sockets.values()) socket.data.replay?.stop();
      await new Promise<void>((resolve) => void io.close(() => resolve()));
    },
  };
}
