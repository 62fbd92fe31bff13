import type { Server as HttpServer } from 'node:http';
import { Server as SocketServer, type Socket } from 'socket.io';
import Type, { type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import type { Logger } from 'pino';
import {
  AlertAck,
  CodedError,
  DOMAINS,
  isDomain,
  isProvinceCode,
  ProvinceCode,
  ReplayControlRequest,
  ReplayId,
  ReplayStartRequest,
  SOCKET_IO_PATH,
  type AlertView,
  type ClientToServerEvents,
  type DeviceStatusEvent,
  type Domain,
  type OperatorReplayState,
  type ProvinceSummary,
  type Rejection,
  type ReplayAck,
  type ReplayState,
  type ServerToClientEvents,
} from '@citypulse/contracts';
import type { Influx } from '@citypulse/infra';
import type { AlertBook } from './alerts.js';
import type { AuditLog } from './audit.js';
import type { ClusterLink } from './cluster.js';
import { parseTime } from './history.js';
import type { LiveState } from './live.js';
import { REPLAY_DEFAULTS, ReplaySession } from './replay.js';
import { canSeeProvince, hasRole, type Principal } from './rights.js';
import type { AuthPrincipal } from './routes/context.js';

/** Live delivery knobs (units in the names). */
export const REALTIME_DEFAULTS = {
  frameIntervalMs: 500,
  heartbeatIntervalMs: 5000,
  /** A socket with more packets than this waiting to be written skips frames until it drains, then gets a snapshot. */
  maxSocketBacklog: 64,
  /** Largest socket.io message a dashboard may send (subscribe, replay controls). */
  maxClientMessageBytes: 16 * 1024,
  /**
   * A replay's state goes to its operator's other screens on every change of state or speed, and
   * with a moving clock at most this often (it changes every frame interval; this crosses Redis).
   */
  operatorEchoIntervalMs: 1000,
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
  /** Cluster mode (API_ADAPTER=redis): the adapter joining the api nodes; absent for a single node. */
  readonly cluster?: Pick<ClusterLink, 'adapter' | 'peerTimeoutMs' | 'connected' | 'onRejoined'> | undefined;
}

interface SocketData {
  principal: AuthPrincipal;
  /** Rooms whose frames were skipped while the socket lagged: they get a snapshot when it drains. */
  resync: Set<string>;
  /** The socket's replay: while it runs, the socket gets no live frames. */
  replay: ReplaySession | undefined;
}

const Username = Type.String({ minLength: 1, maxLength: 64 });

/** Who sends a replay control another node holds: the caller's rights as their node checked them at the time. */
const PeerCaller = Type.Object(
  {
    username: Username,
    role: Type.Union([Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')]),
    provinces: Type.Union([Type.Array(ProvinceCode, { maxItems: 34 }), Type.Null()]),
  },
  { additionalProperties: false },
);
const PeerReplayControl = Type.Object({ replayId: ReplayId, request: ReplayControlRequest, by: PeerCaller }, { additionalProperties: false });
type PeerReplayControl = Static<typeof PeerReplayControl>;
/** An operator's screen that joined another node (socket.io ids are 20 URL-safe base64 characters). */
const PeerScreenJoined = Type.Object({ username: Username, socketId: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }) }, { additionalProperties: false });
type PeerScreenJoined = Static<typeof PeerScreenJoined>;

/**
 * What api nodes tell each other through the adapter in cluster mode (io.serverSideEmit). They
 * come from Redis: each is checked against its schema before it counts.
 */
interface PeerEvents {
  /** An acknowledgement one node stored: the others keep it in their AlertBook (not stored again). */
  alertAcked: (ack: AlertAck) => void;
  /** A control for a replay another node's socket started: its node answers with the ReplayAck, the others with null. */
  replayControl: (message: PeerReplayControl, answer: (result: ReplayAck | null) => void) => void;
  /**
   * An operator's screen joined the sending node: each node holding replays of that operator sends
   * their states to the socket itself, through the adapter. Nobody waits for an answer, so a dead
   * node holds up nothing; and a state sent this way leaves on the same Redis connection as the
   * echoes of that replay, so it cannot overtake a later change.
   */
  operatorScreenJoined: (message: PeerScreenJoined) => void;
}

type CitySocket = Socket<ClientToServerEvents, ServerToClientEvents, PeerEvents, SocketData>;
export type CityIo = SocketServer<ClientToServerEvents, ServerToClientEvents, PeerEvents, SocketData>;

/** A replay running on this node, by its id. */
interface HeldReplay {
  readonly session: ReplaySession;
  /** The screen that started it: it gets the frames. */
  readonly socket: CitySocket;
  readonly owner: string;
  /** What the operator's other screens were last sent. */
  echoed: { readonly state: ReplayState['state']; readonly speed: number; readonly at: number } | undefined;
}

/** The room of one province's domain: what a dashboard subscribes to and what frames go to. */
const ROOM_PREFIX = 'live:';
const liveRoom = (province: string, domain: Domain): string => `${ROOM_PREFIX}${province}:${domain}`;
const roomsOfProvince = (province: string): string[] => DOMAINS.map((domain) => liveRoom(province, domain));
function parseRoom(room: string): { province: string; domain: Domain } | undefined {
  if (!room.startsWith(ROOM_PREFIX)) return undefined;
  const [province = '', domain = ''] = room.slice(ROOM_PREFIX.length).split(':');
  return isDomain(domain) ? { province, domain } : undefined;
}

/** Every screen of one operator, on any node: where their replays' states go. */
const operatorRoom = (username: string): string => `operator:${username}`;

const checkReplayStart = Compile(ReplayStartRequest);
const checkReplayControl = Compile(ReplayControlRequest);
const checkPeerControl = Compile(PeerReplayControl);
const checkPeerScreenJoined = Compile(PeerScreenJoined);
const checkAck = Compile(AlertAck);

/** A peer's answer to a forwarded replay control, as far as it must be trusted (it goes back to the caller as is). */
function isReplayAck(value: unknown): value is ReplayAck {
  if (typeof value !== 'object' || value === null) return false;
  const answer = value as { ok?: unknown; replay?: unknown; error?: { code?: unknown; message?: unknown } };
  if (answer.ok === true) return typeof answer.replay === 'object' && answer.replay !== null;
  return answer.ok === false && typeof answer.error?.code === 'string' && typeof answer.error.message === 'string';
}

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
 *
 * In cluster mode every node subscribes to MQTT and builds the same live state itself, so what
 * comes from it (frames, snapshots, statuses, alerts raised, summaries, heartbeats) goes to the
 * node's own sockets only (`io.local`): sent through the adapter as well, each screen would get it
 * once per node. What one node alone knows crosses: acknowledgements (broadcast, and applied to
 * the peers' books), replay states to their operator's screens (as they change, and to a screen
 * that joins), and replay controls.
 */
export function attachRealtime(options: RealtimeOptions): Realtime {
  const { live, alerts, influx, audit, logger, cluster } = options;
  const io: CityIo = new SocketServer(options.server, {
    path: SOCKET_IO_PATH,
    serveClient: false,
    maxHttpBufferSize: REALTIME_DEFAULTS.maxClientMessageBytes,
    ...(cluster ? { adapter: cluster.adapter } : {}),
  });
  let replays = 0;
  const held = new Map<string, HeldReplay>();
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
    held.delete(replay.id);
    if (socket.connected) sendLiveState(socket, [...socket.rooms]);
  };

  /** A replay's state for its operator's other screens (the one that started it has it as replayState). */
  const echo = (entry: HeldReplay, state: ReplayState) => {
    const now = Date.now();
    const last = entry.echoed;
    if (last && last.state === state.state && last.speed === state.speed && now - last.at < REALTIME_DEFAULTS.operatorEchoIntervalMs) return;
    entry.echoed = { state: state.state, speed: state.speed, at: now };
    io.to(operatorRoom(entry.owner)).except(entry.socket.id).emit('operatorReplayState', { ...state, replayId: entry.session.id });
  };

  /** The states of `username`'s replays held on this node, but the one `socketId` runs itself. */
  const heldReplaysOf = (username: string, socketId: string): OperatorReplayState[] => {
    const states: OperatorReplayState[] = [];
    for (const entry of held.values()) {
      if (entry.owner === username && entry.socket.id !== socketId && !entry.session.stopped) states.push({ ...entry.session.state(), replayId: entry.session.id });
    }
    return states;
  };

  /**
   * A screen that (re)connects hears at once of the replays its operator runs on other screens: a
   * paused or ended one is told again only when it changes. Those of this node now, the peers'
   * as each sends them (see operatorScreenJoined); the connection does not wait for them.
   */
  const tellReplaysElsewhere = (socket: CitySocket) => {
    const { principal } = socket.data;
    if (!hasRole(principal, 'operator')) return; // a viewer runs none and has no replay bar
    for (const state of heldReplaysOf(principal.username, socket.id)) socket.emit('operatorReplayState', state);
    if (cluster) io.serverSideEmit('operatorScreenJoined', { username: principal.username, socketId: socket.id });
  };

  /** Whether `by` may control a replay held here that is not their socket's own: its operator, or an admin who may see its provinces. */
  const mayControl = (entry: HeldReplay, by: Principal): Rejection | undefined => {
    if (!hasRole(by, 'operator')) return { code: 'E_FORBIDDEN', message: `controlling a replay needs the operator role; "${by.username}" is a ${by.role}` };
    if (by.username === entry.owner) return undefined;
    if (!hasRole(by, 'admin')) return { code: 'E_FORBIDDEN', message: `replay ${entry.session.id} is "${entry.owner}"'s; only they or an admin may control it` };
    const outside = entry.session.state().provinces.filter((p) => !canSeeProvince(by, p));
    if (outside.length > 0) return { code: 'E_FORBIDDEN', message: `replay ${entry.session.id} covers provinces ${outside.join(', ')}, outside the provinces "${by.username}" may see` };
    return undefined;
  };

  /** Applies a control to a replay held on this node; the caller's screen, or a peer node's, gets the reply. */
  const controlHeld = (entry: HeldReplay, request: ReplayControlRequest, reply: (result: ReplayAck) => void): void => {
    const { session } = entry;
    switch (request.action) {
      case 'pause':
        return reply({ ok: true, replay: session.pause() });
      case 'resume':
        return reply({ ok: true, replay: session.resume() });
      case 'speed':
        return reply({ ok: true, replay: session.setSpeed(request.speed) });
      case 'stop': {
        const state = session.state();
        endReplay(entry.socket);
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
  };

  const notFound = (replayId: string) => refuse('E_NOT_FOUND', `no replay ${replayId} is running${cluster ? ' on any api node' : ''}; it may have ended (start one with replayStart)`);

  /** A control for a replay that is not held here: asks the peers; the one holding it answers. */
  const forwardControl = (replayId: string, request: ReplayControlRequest, by: Principal, reply: (result: ReplayAck) => void) => {
    if (!cluster) return reply(notFound(replayId));
    const message: PeerReplayControl = { replayId, request, by: { username: by.username, role: by.role, provinces: by.provinces === null ? null : [...by.provinces] } };
    io.serverSideEmit('replayControl', message, (err: Error | null, answers: (ReplayAck | null)[]) => {
      // On a timeout the answers that came are still here: the holder may be among them.
      const answer = answers.find(isReplayAck);
      if (answer) return reply(answer);
      // Redis is down (cluster.ts): the peers cannot be asked.
      if (err instanceof CodedError && err.code === 'E_UPSTREAM') return reply(refuse('E_UPSTREAM', err.message));
      if (err) {
        logger.warn({ err, replayId }, 'api cluster: a peer did not answer a replay control');
        return reply(refuse('E_TIMEOUT', `an api node did not answer within ${cluster.peerTimeoutMs / 1000} s and replay ${replayId} may be on it: try again, or control it from the screen that started it`));
      }
      return reply(notFound(replayId));
    });
  };

  /**
   * Only the node that stored an acknowledgement knows: the peers' books first, so a screen that
   * sees the broadcast and then subscribes on another node finds the alert acknowledged there
   * (one Redis connection publishes both, and the peers receive them in that order).
   */
  const tellAck = (ack: AlertAck, alert: AlertView): void => {
    if (cluster) io.serverSideEmit('alertAcked', ack);
    io.to(liveRoom(alert.province, alert.domain)).emit('alertAck', ack);
  };
  /** Acknowledgements made here while Redis was unreachable. */
  let unheard: Array<{ ack: AlertAck; alert: AlertView }> = [];
  /**
   * After a Redis outage: what this node acknowledged meanwhile is told to the others, and what
   * the others stored meanwhile is read back from InfluxDB and shown on this node's screens.
   */
  const catchUp = async (): Promise<void> => {
    const told = unheard;
    unheard = [];
    for (const { ack, alert } of told) tellAck(ack, alert);
    const missed = await alerts.catchUpAcks();
    for (const { ack, alert } of missed) io.local.to(liveRoom(alert.province, alert.domain)).emit('alertAck', ack);
    if (told.length > 0 || missed.length > 0) logger.info({ told: told.length, missed: missed.length }, 'api cluster: joined again; acknowledgements of the outage exchanged');
  };

  if (cluster) {
    cluster.onRejoined(() => {
      catchUp().catch((err: unknown) => logger.warn({ code: 'E_UPSTREAM', err }, 'api cluster: the acknowledgements made during the outage could not be read back from InfluxDB; screens on this node show them after a reload'));
    });
    io.on('alertAcked', (ack) => {
      if (checkAck.Check(ack)) alerts.applyAck(ack);
      else logger.warn('api cluster: an acknowledgement from a peer that is not an AlertAck was ignored');
    });
    io.on('replayControl', (message, answer) => {
      if (typeof answer !== 'function') return;
      if (!checkPeerControl.Check(message)) {
        logger.warn('api cluster: a replay control from a peer that does not match its schema was ignored');
        return answer(null);
      }
      const entry = held.get(message.replayId);
      if (!entry) return answer(null);
      const refusal = mayControl(entry, message.by);
      if (refusal) return answer({ ok: false, error: refusal });
      controlHeld(entry, message.request, answer);
    });
    io.on('operatorScreenJoined', (message) => {
      if (!checkPeerScreenJoined.Check(message)) {
        logger.warn('api cluster: a joined screen from a peer that does not match its schema was ignored');
        return;
      }
      for (const state of heldReplaysOf(message.username, message.socketId)) io.to(message.socketId).emit('operatorReplayState', state);
    });
  }

  io.on('connection', (socket) => {
    // The room first: a change after the states below reaches the socket as an echo.
    void socket.join(operatorRoom(socket.data.principal.username));
    tellReplaysElsewhere(socket);
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
      const session: ReplaySession = new ReplaySession(
        influx,
        {
          frame: (frame) => socket.emit('frame', frame),
          snapshot: (frame) => socket.emit('snapshot', frame),
          state: (state) => {
            socket.emit('replayState', state);
            echo(entry, state);
            if (state.state === 'stopped' && socket.data.replay === session) endReplay(socket);
          },
        },
        { from, to, speed: request.speed ?? 1, provinces: rooms.provinces, domains: rooms.domains },
        logger,
      );
      const entry: HeldReplay = { session, socket, owner: principal.username, echoed: undefined };
      held.set(session.id, entry);
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
      if (!checkReplayControl.Check(request)) {
        return reply(refuse('E_BAD_REQUEST', 'replay control: send { action: "pause" | "resume" | "stop" }, { action: "seek", at }, or { action: "speed", speed (1–60) }, with replayId (from its state) to control a replay of another screen'));
      }
      const own = socket.data.replay;
      const { replayId } = request;
      // This screen's own replay: as it always was, whoever the operator is now (the heartbeat ends it when they may no longer run one).
      if (replayId === undefined || replayId === own?.id) {
        const entry = own && held.get(own.id);
        if (!entry) return reply(refuse('E_NOT_FOUND', 'no replay is running on this connection; start one with replayStart'));
        return controlHeld(entry, request, reply);
      }
      const by = socket.data.principal;
      if (!hasRole(by, 'operator')) return reply(refuse('E_FORBIDDEN', `controlling a replay needs the operator role; "${by.username}" is a ${by.role}`));
      const local = held.get(replayId);
      if (!local) return forwardControl(replayId, request, by, reply);
      const refusal = mayControl(local, by);
      return refusal ? reply({ ok: false, error: refusal }) : controlHeld(local, request, reply);
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
      // One broadcast per room: encoded once for every screen in it. This node's screens only: every node sends its own.
      if (skip.length === 0) io.local.to(room).emit('frame', frame);
      else if (skip.length < members.size) io.local.to(room).except(skip).emit('frame', frame);
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
    io.local.emit('heartbeat', { serverTime: Date.now() });
  }, REALTIME_DEFAULTS.heartbeatIntervalMs);

  return {
    io,
    // Every node hears these from MQTT itself and tells its own screens.
    deviceStatus: (event) => void io.local.to(liveRoom(event.province, event.domain)).emit('deviceStatus', event),
    alert: (alert) => void io.local.to(liveRoom(alert.province, alert.domain)).emit('alert', alert),
    summary: (summary) => void io.local.to(roomsOfProvince(summary.province)).emit('summary', summary),
    alertAck: (ack, alert) => {
      // Told again once the nodes are joined again: the others cannot hear it now.
      if (cluster && !cluster.connected()) unheard.push({ ack, alert });
      tellAck(ack, alert);
    },
    async close() {
      clearInterval(frameTimer);
      clearInterval(heartbeatTimer);
      for (const socket of io.sockets.sockets.values()) socket.data.replay?.stop();
      await new Promise<void>((resolve) => void io.close(() => resolve()));
    },
  };
}
