import { CodedError } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { shippedScenarioNames } from '../src/cli/options.js';
import { describeScenario, expectedReadings, loadScenarioFile, parseScenarioText, parseTime, resolveScenario, scenarioFromFlags, SCENARIO_DEFAULTS } from '../src/scenario.js';
import { vnLocalMs } from '../src/time.js';

const NOW = Date.UTC(2026, 10, 22, 3, 0); // 10:00 in Vietnam

function problems(yaml: string): string {
  try {
    parseScenarioText(yaml, 'test.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(CodedError);
    expect((err as CodedError).code).toBe('E_CONFIG');
    return (err as Error).message;
  }
  throw new Error('the scenario was accepted');
}

describe('scenario files', () => {
  it('ships the scenarios the README promises, each valid', async () => {
    const names = shippedScenarioNames();
    expect(names).toEqual(expect.arrayContaining(['quiet-night', 'hanoi-winter-rush', 'south-grid-fault', 'national-50k']));
    for (const name of names) {
      const scenario = resolveScenario(await loadScenarioFile(name), { nowMs: NOW });
      expect(scenario.groups.length, name).toBeGreaterThan(0);
      expect(describeScenario(scenario), name).toContain(`scenario ${name}:`);
    }
  });

  it('resolves a Hà Nội winter rush: local times, event windows, defaults', async () => {
    const scenario = resolveScenario(await loadScenarioFile('hanoi-winter-rush'), { nowMs: NOW });
    expect(scenario.startMs).toBe(vnLocalMs(2026, 1, 15, 6, 45));
    expect(scenario.durationMs).toBe(3 * 3_600_000);
    const accident = scenario.events.find((e) => e.type === 'traffic-incident');
    expect(accident).toMatchObject({ province: '01', startMs: vnLocalMs(2026, 1, 15, 7, 40), endMs: vnLocalMs(2026, 1, 15, 8, 25), severity: 0.8 });
    expect(scenario.groups.find((g) => g.province === '01' && g.domain === 'traffic')).toEqual({ province: '01', domain: 'traffic', count: 240, intervalMs: 20_000 });
    expect(scenario.faults.stuck).toMatchObject({ share: 0.03, durationMs: 1_200_000 });
    expect(scenario.faults.stuck?.domains?.has('environment')).toBe(true);
    expect(expectedReadings(scenario)).toBe((240 + 30 + 20) * 540 + (40 + 6 + 4) * 180 + (60 + 10 + 8) * 720);
  });

  it('lets a later province entry replace "all" for that province', async () => {
    const scenario = resolveScenario(await loadScenarioFile('quiet-night'), { nowMs: NOW });
    expect(new Set(scenario.groups.map((g) => g.province)).size).toBe(34);
    expect(scenario.groups.find((g) => g.province === '01' && g.domain === 'traffic')?.count).toBe(12);
    expect(scenario.groups.find((g) => g.province === '48' && g.domain === 'traffic')?.count).toBe(4);
  });

  it('gives national-50k at least 50,000 devices on gateway connections', async () => {
    const scenario = resolveScenario(await loadScenarioFile('national-50k'), { nowMs: NOW });
    expect(scenario.groups.reduce((n, g) => n + g.count, 0)).toBeGreaterThanOrEqual(50_000);
    expect(scenario).toMatchObject({ mode: 'gateway', gateways: 10, uploadMs: 5000 });
  });

  it('applies command-line overrides and switches faults on with their defaults', () => {
    const file = scenarioFromFlags({ provinces: ['01', '48'], domains: ['traffic', 'energy'], devicesPerProvince: 2, intervalMs: 1500 });
    const scenario = resolveScenario(file, { nowMs: NOW, seed: 7, speed: 'max', mode: 'gateway', gateways: 2, durationMs: 60_000, start: '2026-07-01T08:00', timestamps: 'scenario', faults: ['malformed', 'flood'] });
    expect(scenario).toMatchObject({ seed: 7, speed: 'max', mode: 'gateway', gateways: 2, durationMs: 60_000, startMs: vnLocalMs(2026, 7, 1, 8, 0), timestamps: 'scenario' });
    expect(scenario.groups).toEqual([
      { province: '01', domain: 'traffic', count: 2, intervalMs: 1500 },
      { province: '01', domain: 'energy', count: 2, intervalMs: 1500 },
      { province: '48', domain: 'traffic', count: 2, intervalMs: 1500 },
      { province: '48', domain: 'energy', count: 2, intervalMs: 1500 },
    ]);
    expect(Object.keys(scenario.faults).sort()).toEqual(['flood', 'malformed']);
    expect(scenario.qos).toEqual(SCENARIO_DEFAULTS.qos);
    // "now" starts the clock at the wall clock.
    expect(resolveScenario(file, { nowMs: NOW }).startMs).toBe(NOW);
  });

  it('reads JSON as well as YAML', () => {
    const json = JSON.stringify({ name: 'json', provinces: [{ code: '92', devices: { traffic: 1, environment: 0, energy: 0 } }] });
    expect(parseScenarioText(json, 'x.json', 'json').provinces[0]?.code).toBe('92');
    expect(() => parseScenarioText('{"name": ', 'x.json', 'json')).toThrow(/x\.json is not valid JSON/);
  });

  it.each([
    ['a bad province code', 'name: x\nprovinces: [{ code: "99" }]', /provinces\[0\]\.code: "99" is not one of the 34 province codes/],
    ['a negative device count', 'name: x\nprovinces: [{ code: "01", devices: { traffic: -1 } }]', /provinces\[0\]\.devices\.traffic: /],
    ['an interval without a unit', 'name: x\nprovinces: [{ code: "01", interval: { energy: "15" } }]', /provinces\[0\]\.interval\.energy: /],
    ['an interval too short', 'name: x\ndefaults: { interval: { traffic: 10ms } }\nprovinces: [{ code: "01" }]', /defaults\.interval\.traffic: "10ms" must be from 100ms to 1h/],
    ['an unknown key', 'name: x\nprovince: [{ code: "01" }]\nprovinces: [{ code: "01" }]', /\(root\): .*"province"|province/],
    ['a missing name', 'provinces: [{ code: "01" }]', /\(root\): .*name|name/],
    ['no provinces', 'name: x\nprovinces: []', /provinces: /],
    ['an unknown event type', 'name: x\nprovinces: [{ code: "01" }]\nevents: [{ type: earthquake, at: "+1m", duration: 1m }]', /events\[0\]\.type: "earthquake" must be one of traffic-incident, rain/],
    ['an event severity above 1', 'name: x\nprovinces: [{ code: "01" }]\nevents: [{ type: traffic-incident, province: "01", at: "+1m", duration: 5m, severity: 2 }]', /events\[0\]\.severity: /],
    ['an event at a bad time', 'name: x\nprovinces: [{ code: "01" }]\nevents: [{ type: rain, provinces: ["01"], at: "25:00", duration: 5m, mmPerHour: 5 }]', /events\[0\]\.at: "25:00" must be/],
    ['an event in an unknown province', 'name: x\nprovinces: [{ code: "01" }]\nevents: [{ type: grid-outage, province: "63", at: "+1m", duration: 5m }]', /events\[0\]\.province: "63" is not a province code/],
    ['a fault share above 1', 'name: x\nprovinces: [{ code: "01" }]\nfaults: { stuck: { share: 1.5 } }', /faults\.stuck\.share: /],
    ['an unknown fault', 'name: x\nprovinces: [{ code: "01" }]\nfaults: { gremlins: {} }', /faults: .*gremlins/],
    ['a speed that is not a number', 'name: x\nspeed: fast\nprovinces: [{ code: "01" }]', /speed: /],
    ['a bad start', 'name: x\nstart: tomorrow\nprovinces: [{ code: "01" }]', /start: "tomorrow" must be "now"/],
    ['too many devices', 'name: x\nprovinces: [{ code: all, devices: { traffic: 99999, environment: 99999 } }]', /provinces: \d+ devices in all; at most 200000/],
    ['no devices at all', 'name: x\nprovinces: [{ code: "01", devices: { traffic: 0, environment: 0, energy: 0 } }]', /no devices at all/],
    ['an upload without gateways', 'name: x\nconnection: { upload: 5s }\nprovinces: [{ code: "01" }]', /connection\.upload: only gateways upload periodically/],
    ['YAML that does not parse', 'name: x\nprovinces: [{ code: "01"', /test\.yaml is not valid YAML/],
    ['a duplicated key', 'name: x\nname: y\nprovinces: [{ code: "01" }]', /not valid YAML/],
  ])('names the bad field: %s', (_what, yaml, message) => {
    expect(problems(yaml)).toMatch(message);
  });

  it('says which scenario file is missing', async () => {
    await expect(loadScenarioFile('no-such-scenario')).rejects.toThrow(/scenario "no-such-scenario": no such file, and no shipped scenario of that name/);
  });

  it('parses event times relative, local and absolute', () => {
    const start = vnLocalMs(2026, 1, 15, 6, 45);
    expect(parseTime('+15m', start)).toBe(start + 900_000);
    expect(parseTime('07:40', start)).toBe(vnLocalMs(2026, 1, 15, 7, 40));
    expect(parseTime('2026-01-15T07:40', start)).toBe(vnLocalMs(2026, 1, 15, 7, 40));
    expect(parseTime('2026-01-15T00:40:00Z', start)).toBe(vnLocalMs(2026, 1, 15, 7, 40));
    expect(parseTime('2026-01-15T07:40:00+07:00', start)).toBe(vnLocalMs(2026, 1, 15, 7, 40));
    expect(parseTime('7h', start)).toBeNaN();
    expect(parseTime('+soon', start)).toBeNaN();
  });
});
