import type { OperatorReplayState } from '@citypulse/contracts';

/**
 * A playing replay of another screen that has said nothing for this long is dropped: the api
 * repeats its state about once a second while the clock moves (`operatorEchoIntervalMs` in
 * api/src/realtime.ts), so a longer silence means its api node went away without a 'stopped'.
 * Paused and ended replays are only told on a change: they never go silent this way.
 */
export const OTHER_SCREEN_SILENCE_MS = 15_000;
/** Replays known to be over, remembered so that a late echo or answer does not bring one back. */
const GONE_REMEMBERED = 64;

/** What the replay area says about the operator's other screens. */
export interface OtherScreenNotice {
  readonly replay: OperatorReplayState;
  /** This screen replays or follows a replay itself: said quietly, with nothing to follow. */
  readonly subtle: boolean;
}

/** Where this screen is, for the notice: its own replay, the one it follows, or a start on its way. */
export interface ThisScreen {
  readonly ownReplayId: string | null;
  readonly followingId: string | null;
  readonly replaying: boolean;
}

/**
 * The replays the same operator runs on their other screens, as the api tells them
 * (`operatorReplayState`, on any api node). Pure: the replay bar feeds it and draws `notice()`.
 * A replay is shown from its first state until its 'stopped' (or silence, see above); the newest
 * one first seen wins, so two playing replays do not take turns every second.
 */
export class OtherScreenReplays {
  /** By replayId, in the order first seen. */
  readonly #replays = new Map<string, { state: OperatorReplayState; at: number }>();
  /** Hidden by the operator until they stop (a new replay has a new id and shows again). */
  readonly #dismissed = new Set<string>();
  readonly #gone = new Set<string>();

  /** A state of another screen's replay (from the socket, or the answer to a control sent to it). */
  apply(state: OperatorReplayState, now: number): void {
    const id = state.replayId;
    if (this.#gone.has(id)) return;
    if (state.state === 'stopped') {
      this.forget(id);
      return;
    }
    // Map.set keeps a known key where it was first inserted.
    this.#replays.set(id, { state, at: now });
  }

  /** The replay is over (stopped, or the api no longer knows it). */
  forget(replayId: string): void {
    this.#replays.delete(replayId);
    this.#dismissed.delete(replayId);
    this.#gone.add(replayId);
    if (this.#gone.size > GONE_REMEMBERED) {
      const oldest = this.#gone.values().next();
      if (oldest.done !== true) this.#gone.delete(oldest.value);
    }
  }

  /** The connection dropped: what it told may be out of date (the api tells a screen that connects of every replay its operator runs). */
  clear(): void {
    this.#replays.clear();
    this.#dismissed.clear();
  }

  /** Drops the playing replays silent for OTHER_SCREEN_SILENCE_MS; true when one was dropped. */
  expire(now: number): boolean {
    let dropped = false;
    for (const [id, { state, at }] of this.#replays) {
      if ((state.state === 'playing' || state.state === 'buffering') && now - at > OTHER_SCREEN_SILENCE_MS) {
        this.#replays.delete(id);
        this.#dismissed.delete(id);
        dropped = true;
      }
    }
    return dropped;
  }

  dismiss(replayId: string): void {
    if (this.#replays.has(replayId)) this.#dismissed.add(replayId);
  }

  get(replayId: string): OperatorReplayState | undefined {
    return this.#replays.get(replayId)?.state;
  }

  get size(): number {
    return this.#replays.size;
  }

  /**
   * The replay to tell this screen of: the newest one that is not its own, not the one it follows
   * and not dismissed. Full (with Follow) on a live screen, subtle on one that replays itself.
   */
  notice(screen: ThisScreen): OtherScreenNotice | null {
    let newest: OperatorReplayState | null = null;
    for (const [id, { state }] of this.#replays) {
      if (id !== screen.ownReplayId && id !== screen.followingId && !this.#dismissed.has(id)) newest = state;
    }
    if (newest === null) return null;
    return { replay: newest, subtle: screen.replaying || screen.followingId !== null };
  }
}
