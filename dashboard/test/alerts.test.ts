import { alertId, type AlertAck, type AlertSeverity, type AlertView } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { ActiveAlerts, compareAlerts } from '../src/live/alerts.js';

const T = Date.UTC(2026, 0, 1, 3, 0, 0);

function alert(deviceId: string, raisedAt: number, options: { severity?: AlertSeverity; province?: string; domain?: AlertView['domain']; state?: AlertView['state']; ack?: AlertAck | null } = {}): AlertView {
  const { severity = 'warning', province = '01', domain = 'environment', state = 'raised', ack = null } = options;
  return {
    id: alertId('pm25-high', deviceId, raisedAt),
    ruleId: 'pm25-high',
    kind: 'threshold',
    state,
    severity,
    deviceId,
    province,
    domain,
    field: 'pm25',
    value: 60,
    threshold: 55.4,
    message: 'PM2.5 above 55.4 µg/m³ for 10 min (60)',
    raisedAt,
    ts: state === 'raised' ? raisedAt : raisedAt + 60_000,
    ack,
  };
}

function ackOf(a: AlertView, operator = 'op1', ts = T + 5_000): AlertAck {
  return { id: a.id, province: a.province, deviceId: a.deviceId, operator, note: 'đã cử người kiểm tra', ts };
}

const ids = (list: readonly AlertView[]): string[] => list.map((a) => a.deviceId);

describe('ActiveAlerts', () => {
  it('adds raised alerts, replaces them by id, removes cleared ones and counts versions', () => {
    const book = new ActiveAlerts();
    const a = alert('env-a', T);
    expect(book.version).toBe(0);
    expect(book.apply(a)).toBe(true);
    expect(book.version).toBe(1);
    expect(book.get(a.id)).toBe(a);
    // The same event again changes nothing (no redraw).
    expect(book.apply({ ...a })).toBe(false);
    expect(book.version).toBe(1);
    const worse = { ...a, severity: 'critical' as const, message: 'worse' };
    expect(book.apply(worse)).toBe(true);
    expect(book.get(a.id)?.severity).toBe('critical');
    expect(book.version).toBe(2);
    expect(book.apply(alert('env-a', T, { state: 'cleared' }))).toBe(true);
    expect(book.get(a.id)).toBeUndefined();
    expect(book.size).toBe(0);
    expect(book.version).toBe(3);
    // Clearing an alert we never had is not a change.
    expect(book.apply(alert('env-x', T, { state: 'cleared' }))).toBe(false);
    expect(book.version).toBe(3);
  });

  it('lists newest first, the more severe first at the same time, and filters by province', () => {
    const book = new ActiveAlerts();
    book.apply(alert('old', T - 60_000, { severity: 'critical' }));
    book.apply(alert('new-info', T, { severity: 'info' }));
    book.apply(alert('new-critical', T, { severity: 'critical', province: '79' }));
    book.apply(alert('mid', T - 1_000, { province: '79' }));
    expect(ids(book.list())).toEqual(['new-critical', 'new-info', 'mid', 'old']);
    expect(ids(book.list({ province: '79' }))).toEqual(['new-critical', 'mid']);
    expect(ids(book.list({ province: '48' }))).toEqual([]);
    // A fresh array each time: callers may keep or sort it.
    const list = book.list();
    list.pop();
    expect(book.list()).toHaveLength(4);
    expect(compareAlerts(alert('x', T), alert('x', T))).toBe(0);
  });

  it('replaces exactly the provinces × domains a snapshot covers and keeps the others', () => {
    const book = new ActiveAlerts();
    const hanoiEnv = alert('hn-env', T);
    const hanoiTraffic = alert('hn-traffic', T, { domain: 'traffic' });
    const hcmEnv = alert('hcm-env', T - 1, { province: '79' });
    book.apply(hanoiEnv);
    book.apply(hanoiTraffic);
    book.apply(hcmEnv);
    const fresh = alert('hn-env-2', T + 1_000);
    const before = book.version;
    book.applySnapshot({ provinces: ['01'], domains: ['environment'], alerts: [fresh] });
    expect(ids(book.list())).toEqual(['hn-env-2', 'hn-traffic', 'hcm-env']);
    expect(book.version).toBeGreaterThan(before);

    // The same snapshot again is not a change, and keeps the objects (views compare by identity).
    const held = book.get(fresh.id);
    const version = book.version;
    book.applySnapshot({ provinces: ['01'], domains: ['environment'], alerts: [{ ...fresh }] });
    expect(book.version).toBe(version);
    expect(book.get(fresh.id)).toBe(held);

    // An empty snapshot of a room empties that room only.
    book.applySnapshot({ provinces: ['01', '79'], domains: ['environment'], alerts: [] });
    expect(ids(book.list())).toEqual(['hn-traffic']);
  });

  it('ignores cleared events inside a snapshot', () => {
    const book = new ActiveAlerts();
    book.applySnapshot({ provinces: ['01'], domains: ['environment'], alerts: [alert('a', T), alert('b', T, { state: 'cleared' })] });
    expect(ids(book.list())).toEqual(['a']);
  });

  it('sets the first acknowledgement on its alert and keeps it across later copies without one', () => {
    const book = new ActiveAlerts();
    const a = alert('env-a', T);
    book.apply(a);
    const ack = ackOf(a);
    expect(book.applyAck(ack)).toBe(true);
    expect(book.get(a.id)?.ack).toEqual(ack);
    // The stored alert is replaced, never mutated.
    expect(a.ack).toBeNull();
    const version = book.version;
    // Our POST's answer then the broadcast: one change. A second operator's ack does not replace the first.
    expect(book.applyAck(ack)).toBe(false);
    expect(book.applyAck(ackOf(a, 'op2', T + 9_000))).toBe(false);
    expect(book.version).toBe(version);
    expect(book.get(a.id)?.ack?.operator).toBe('op1');
    // An ack for an alert we do not hold is ignored.
    expect(book.applyAck(ackOf(alert('unknown', T)))).toBe(false);
    // A redelivered raise without the ack, or a snapshot built before it, keeps the ack we have.
    book.apply({ ...a, message: 'updated' });
    expect(book.get(a.id)?.ack?.operator).toBe('op1');
    book.applySnapshot({ provinces: ['01'], domains: ['environment'], alerts: [a] });
    expect(book.get(a.id)?.ack?.operator).toBe('op1');
  });

  it('gives the worst severity per device and counts by severity, per province or in all', () => {
    const book = new ActiveAlerts();
    book.apply(alert('d1', T, { severity: 'info' }));
    book.apply(alert('d1', T + 1, { severity: 'critical' }));
    book.apply(alert('d1', T + 2, { severity: 'warning' }));
    book.apply(alert('d2', T, { severity: 'info', province: '79' }));
    expect(book.worstByDevice()).toEqual(
      new Map([
        ['d1', 'critical'],
        ['d2', 'info'],
      ]),
    );
    expect(book.counts()).toEqual({ info: 2, warning: 1, critical: 1 });
    expect(book.counts('79')).toEqual({ info: 1, warning: 0, critical: 0 });
    expect(book.counts('48')).toEqual({ info: 0, warning: 0, critical: 0 });
    book.apply(alert('d1', T + 1, { state: 'cleared' }));
    expect(book.worstByDevice().get('d1')).toBe('warning');
    book.clear();
    expect(book.worstByDevice().size).toBe(0);
    expect(book.list()).toEqual([]);
  });
});
