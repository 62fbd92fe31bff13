import { io as connectSocket, type Socket } from 'socket.io-client';
import { SOCKET_IO_PATH, type AlertAck, type AlertsSnapshot, type AlertView, type LiveFrame, type OperatorReplayState, type ProvinceSummary, type ReplayState } from '@citypulse/contracts';

/** A dashboard socket and every event the api sent it, by kind. */
export interface Screen {
  readonly socket: Socket;
  readonly got: {
    readonly frames: LiveFrame[];
    readonly snapshots: LiveFrame[];
    readonly alerts: AlertView[];
    readonly acks: AlertAck[];
    readonly summaries: ProvinceSummary[];
    readonly alertSnapshots: AlertsSnapshot[];
    readonly replay: ReplayState[];
    /** Replays of the same operator on other screens. */
    readonly elsewhere: OperatorReplayState[];
  };
}

/** Connects a dashboard socket to the api at `url` with a session token, recording what it receives; `sockets` collects it for closing. */
export async function recordingScreen(url: string, token: string | undefined, sockets: Socket[]): Promise<Screen> {
  const socket = connectSocket(url, { path: SOCKET_IO_PATH, auth: { token }, transports: ['websocket'], reconnection: false });
  sockets.push(socket);
  const got: Screen['got'] = { frames: [], snapshots: [], alerts: [], acks: [], summaries: [], alertSnapshots: [], replay: [], elsewhere: [] };
  socket.on('frame', (f: LiveFrame) => got.frames.push(f));
  socket.on('snapshot', (f: LiveFrame) => got.snapshots.push(f));
  socket.on('alert', (a: AlertView) => got.alerts.push(a));
  socket.on('alertAck', (a: AlertAck) => got.acks.push(a));
  socket.on('summary', (s: ProvinceSummary) => got.summaries.push(s));
  socket.on('alerts', (s: AlertsSnapshot) => got.alertSnapshots.push(s));
  socket.on('replayState', (s: ReplayState) => got.replay.push(s));
  socket.on('operatorReplayState', (s: OperatorReplayState) => got.elsewhere.push(s));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return { socket, got };
}
