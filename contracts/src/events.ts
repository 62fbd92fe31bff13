import type { Derived, Fields, ReadingState } from './enrich.js';
import type { Rejection } from './result.js';
import type { Domain } from './topics.js';

/** One device's reading as the live map and the replay draw it (same shape for both). */
export interface LiveReading {
  readonly deviceId: string;
  readonly province: string;
  readonly domain: Domain;
  /** Device time of measurement, epoch ms. */
  readonly ts: number;
  readonly seq: number;
  readonly values: Fields;
  readonly derived: Derived;
  readonly state: ReadingState;
}

/** A coalesced frame: the latest reading of every device that changed since the last frame. */
export interface LiveFrame {
  readonly province: string;
  readonly mode: 'live' | 'replay';
  /** Server time the frame was built, epoch ms. */
  readonly sentAt: number;
  readonly readings: readonly LiveReading[];
}

export interface DeviceStatusEvent {
  readonly deviceId: string;
  readonly province: string;
  readonly domain: Domain;
  readonly state: 'online' | 'offline';
  readonly ts: number;
}

export interface SubscribeRequest {
  readonly provinces: readonly string[];
}

export type SubscribeAck = { readonly ok: true; readonly provinces: readonly string[] } | { readonly ok: false; readonly error: Rejection };

/** Events the api sends to dashboards (socket.io `Server<ClientToServerEvents, ServerToClientEvents>`). */
export interface ServerToClientEvents {
  /** Sent once per province on subscribe: the latest reading of every device there. */
  snapshot: (frame: LiveFrame) => void;
  /** Coalesced deltas at the api's frame interval. */
  frame: (frame: LiveFrame) => void;
  deviceStatus: (event: DeviceStatusEvent) => void;
  /** Lets the dashboard show staleness when frames stop. */
  heartbeat: (event: { readonly serverTime: number }) => void;
}

export interface ClientToServerEvents {
  subscribe: (request: SubscribeRequest, ack: (result: SubscribeAck) => void) => void;
  unsubscribe: (request: SubscribeRequest, ack: (result: SubscribeAck) => void) => void;
}

/** The path socket.io is served on, shared by api and dashboard. */
export const SOCKET_IO_PATH = '/socket.io';
