import type { OperatorReplayState } from '@citypulse/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { setLang } from '../src/i18n.js';
import { OTHER_SCREEN_SILENCE_MS, OtherScreenReplays, type ThisScreen } from '../src/live/other-screens.js';
import { noticeText } from '../src/ui/other-screen.js';

// 2026-03-05 01:00:00 UTC is 08:00:00 in Vietnam.
const FROM = Date.UTC(2026, 2, 5, 1, 0, 0);
const HOUR = 3_600_000;
const NOW = FROM + 2 * HOUR;

function replay(replayId: string, state: OperatorReplayState['state'] = 'playing', extra: Partial<OperatorReplayState> = {}): OperatorReplayState {
  return { replayId, state, from: FROM, to: FROM + HOUR, speed: 10, clock: FROM + 60_000, provinces: ['01'], domains: ['environment'], ...extra };
}

const LIVE: ThisScreen = { ownReplayId: null, followingId: null, replaying: false };

describe('OtherScreenReplays', () => {
  it('tells a live screen of the other screen\'s replay until it stops, following its changes', () => {
    const others = new OtherScreenReplays();
    expect(others.notice(LIVE)).toBeNull();
    others.apply(replay('r1', 'paused'), NOW);
    others.apply(replay('r1', 'playing'), NOW + 100);
    expect(others.notice(LIVE)).toEqual({ replay: replay('r1', 'playing'), subtle: false });
    others.apply(replay('r1', 'paused', { speed: 30, clock: FROM + 90_000 }), NOW + 200);
    expect(others.notice(LIVE)?.replay).toMatchObject({ state: 'paused', speed: 30, clock: FROM + 90_000 });
    others.apply(replay('r1', 'stopped'), NOW + 300);
    expect(others.notice(LIVE)).toBeNull();
    expect(others.size).toBe(0);
  });

  it('does not bring back a stopped replay with a late echo or the answer to a control', () => {
    const others = new OtherScreenReplays();
    others.apply(replay('r1'), NOW);
    others.apply(replay('r1', 'stopped'), NOW + 10);
    others.apply(replay('r1', 'paused'), NOW + 20); // the answer to a pause, overtaken by the stop (cluster mode)
    expect(others.notice(LIVE)).toBeNull();
    // The api no longer knows one (a control answered E_NOT_FOUND): the same.
    others.apply(replay('r2'), NOW);
    others.forget('r2');
    others.apply(replay('r2'), NOW + 10);
    expect(others.get('r2')).toBeUndefined();
  });

  it('ignores this screen\'s own replay and the one it follows; tells a replaying screen quietly', () => {
    const others = new OtherScreenReplays();
    others.apply(replay('mine'), NOW);
    expect(others.notice({ ownReplayId: 'mine', followingId: null, replaying: true })).toBeNull();
    others.apply(replay('wall'), NOW);
    expect(others.notice({ ownReplayId: 'mine', followingId: null, replaying: true })).toEqual({ replay: replay('wall'), subtle: true });
    // Following "wall": the bar shows it, the notice does not repeat it.
    expect(others.notice({ ownReplayId: null, followingId: 'wall', replaying: false })).toEqual({ replay: replay('mine'), subtle: true });
    // A start on its way counts as replaying: nothing to follow then.
    expect(others.notice({ ownReplayId: null, followingId: null, replaying: true })?.subtle).toBe(true);
  });

  it('shows the newest of two other screens and does not alternate as both keep playing', () => {
    const others = new OtherScreenReplays();
    others.apply(replay('desk'), NOW);
    others.apply(replay('laptop'), NOW + 100);
    for (let t = 1; t <= 3; t++) {
      others.apply(replay('desk', 'playing', { clock: FROM + t * 1000 }), NOW + t * 1000);
      expect(others.notice(LIVE)?.replay.replayId).toBe('laptop');
      others.apply(replay('laptop', 'playing', { clock: FROM + t * 1000 }), NOW + t * 1000 + 10);
      expect(others.notice(LIVE)?.replay.replayId).toBe('laptop');
    }
    others.apply(replay('laptop', 'stopped'), NOW + 5000);
    expect(others.notice(LIVE)?.replay.replayId).toBe('desk');
  });

  it('hides a dismissed replay until it stops; a new replay shows again', () => {
    const others = new OtherScreenReplays();
    others.apply(replay('r1'), NOW);
    others.dismiss('r1');
    expect(others.notice(LIVE)).toBeNull();
    others.apply(replay('r1', 'paused'), NOW + 1000);
    expect(others.notice(LIVE)).toBeNull();
    others.apply(replay('r2'), NOW + 2000);
    expect(others.notice(LIVE)?.replay.replayId).toBe('r2');
    // Dismissing one not (or no longer) known is a no-op.
    others.dismiss('nope');
    expect(others.notice(LIVE)?.replay.replayId).toBe('r2');
  });

  it('drops a playing replay gone silent, never a paused or ended one', () => {
    const others = new OtherScreenReplays();
    others.apply(replay('playing'), NOW);
    others.apply(replay('buffering', 'buffering'), NOW);
    others.apply(replay('paused', 'paused'), NOW);
    others.apply(replay('ended', 'ended'), NOW);
    expect(others.expire(NOW + OTHER_SCREEN_SILENCE_MS)).toBe(false);
    expect(others.size).toBe(4);
    expect(others.expire(NOW + OTHER_SCREEN_SILENCE_MS + 1)).toBe(true);
    expect([others.get('playing'), others.get('buffering')]).toEqual([undefined, undefined]);
    expect(others.get('paused')?.state).toBe('paused');
    expect(others.get('ended')?.state).toBe('ended');
    // Silence is not an end: it is told again once its node is back.
    others.apply(replay('playing'), NOW + 60_000);
    expect(others.get('playing')?.state).toBe('playing');
  });

  it('forgets everything when the connection dropped, and hears it again', () => {
    const others = new OtherScreenReplays();
    others.apply(replay('r1', 'paused'), NOW);
    others.dismiss('r1');
    others.clear();
    expect(others.size).toBe(0);
    others.apply(replay('r1', 'paused'), NOW + 1000);
    expect(others.notice(LIVE)?.replay.replayId).toBe('r1');
  });

  it('takes the states the api sends on connect, several at once, but not this screen\'s replay lost with the old connection', () => {
    const others = new OtherScreenReplays();
    // This screen's replay ended with the dropped connection; its api node may not know yet.
    others.forget('mine');
    for (const state of [replay('mine', 'paused'), replay('desk', 'paused'), replay('laptop', 'ended')]) others.apply(state, NOW);
    expect([others.get('mine'), others.get('desk')?.state, others.get('laptop')?.state]).toEqual([undefined, 'paused', 'ended']);
    expect(others.notice(LIVE)?.replay.replayId).toBe('laptop');
    expect(others.expire(NOW + 10 * OTHER_SCREEN_SILENCE_MS)).toBe(false); // told once: paused and ended ones stay
  });
});

describe('noticeText', () => {
  afterEach(() => setLang('vi'));

  it('says range (Vietnam time), speed and state, in Vietnamese first and in English', () => {
    setLang('vi');
    expect(noticeText({ replay: replay('r1'), subtle: false })).toBe('Màn hình khác của bạn đang phát lại: 08:00:00–09:00:00 05/03, 10×, đang phát');
    expect(noticeText({ replay: replay('r1', 'paused', { speed: 2 }), subtle: true })).toBe('Màn hình khác của bạn cũng đang phát lại: 08:00:00–09:00:00 05/03, 2×, tạm dừng');
    setLang('en');
    expect(noticeText({ replay: replay('r1'), subtle: false })).toBe('A replay is running on your other screen: 08:00:00–09:00:00 05/03, 10×, playing');
    expect(noticeText({ replay: replay('r1', 'paused'), subtle: false })).toBe('A replay is running on your other screen: 08:00:00–09:00:00 05/03, 10×, paused');
    expect(noticeText({ replay: replay('r1', 'ended'), subtle: true })).toBe('Your other screen is replaying too: 08:00:00–09:00:00 05/03, 10×, ended');
  });
});
