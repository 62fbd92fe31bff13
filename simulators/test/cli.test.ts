import { describe, expect, it } from 'vitest';
import { formatStatus, parseCli, parseDuration, parseSize, shippedScenarioNames, UsageError } from '../src/cli/options.js';
import type { SimulationStats } from '../src/index.js';

const parse = (argv: string[], env: Record<string, string> = {}) => parseCli(argv, env, '/home/op/citypulse');

function usageError(argv: string[], env: Record<string, string> = {}): string {
  try {
    parse(argv, env);
  } catch (err) {
    if (err instanceof UsageError) return err.message;
    throw err;
  }
  throw new Error(`no usage error for ${argv.join(' ')}`);
}

describe('simulate command line', () => {
  it('parses the flags that build a scenario without a file', () => {
    const command = parse(['--', '--mqtt-url', 'mqtt://broker:1884', '--data-dir', 'var/data', '--provinces', '01, 79,48', '--domains', 'traffic,energy', '--devices', '12', '--interval', '500ms', '--seed', '7']);
    expect(command.help).toBe(false);
    expect(command.help || command.options).toMatchObject({
      mqttUrl: 'mqtt://broker:1884',
      dataDir: '/home/op/citypulse/var/data',
      scenario: undefined,
      provinces: ['01', '79', '48'],
      domains: ['traffic', 'energy'],
      devicesPerProvince: 12,
      intervalMs: 500,
      seed: 7,
      faults: [],
      provision: true,
      check: false,
      statusIntervalMs: 10_000,
      logLevel: 'info',
    });
  });

  it('parses scenario, clock, connection and recording flags', () => {
    const command = parse(['--scenario', 'hanoi-winter-rush', '--speed', 'max', '--start', '2026-01-15T07:00', '--duration', '2h', '--timestamps', 'scenario', '--mode', 'gateway', '--gateways', '4', '--faults', 'stuck,wrong-topic', '--record', 'rec/city.ndjson.gz', '--record-rotate-size', '100MB', '--record-rotate-time', '1h', '--no-provision', '--connect-rate', '200', '--threads', '2', '--check']);
    expect(command.help || command.options).toMatchObject({
      scenario: 'hanoi-winter-rush',
      speed: 'max',
      start: '2026-01-15T07:00',
      durationMs: 7_200_000,
      timestamps: 'scenario',
      mode: 'gateway',
      gateways: 4,
      faults: ['stuck', 'wrongTopic'],
      record: { path: '/home/op/citypulse/rec/city.ndjson.gz', gzip: true, rotateBytes: 100 * 1024 * 1024, rotateMs: 3_600_000 },
      provision: false,
      connectRate: 200,
      threads: 2,
      check: true,
    });
    const options = (argv: string[]) => {
      const c = parse(argv);
      if (c.help) throw new Error('help');
      return c.options;
    };
    expect(options(['--speed', '60']).speed).toBe(60);
    expect(options(['--faults', 'all']).faults).toHaveLength(6);
    expect(options([]).threads).toBe('auto');
    expect(options(['--threads', 'auto']).threads).toBe('auto');
  });

  it('falls back to MQTT_URL and DATA_DIR, then to defaults', () => {
    const command = parse([], { MQTT_URL: 'mqtt://10.0.0.5:1883', DATA_DIR: '/srv/citypulse' });
    expect(command.help || command.options).toMatchObject({ mqttUrl: 'mqtt://10.0.0.5:1883', dataDir: '/srv/citypulse', provinces: ['01', '79', '48'], intervalMs: 5000, seed: undefined });
    const all = parse(['--provinces', 'all']);
    expect(all.help || all.options.provinces).toHaveLength(34);
    expect(parse(['-h'])).toEqual({ help: true });
  });

  it('provisions in the registry the services use: REGISTRY_STORE and REDIS_URL, as theirs', () => {
    const single = parse([]);
    expect(single.help || single.options.registry).toEqual({ store: 'file', redisUrl: 'redis://127.0.0.1:6379/0' });
    const cluster = parse([], { REGISTRY_STORE: 'redis', REDIS_URL: 'redis://redis:6379/2' });
    expect(cluster.help || cluster.options.registry).toEqual({ store: 'redis', redisUrl: 'redis://redis:6379/2' });
    expect(usageError([], { REGISTRY_STORE: 'etcd' })).toBe('REGISTRY_STORE="etcd" must be one of file, redis');
  });

  it('names the flag in every error', () => {
    expect(usageError(['--provinces', '01,99'])).toMatch(/^--provinces: "99" is not a province code; use codes such as 01 \(Hà Nội\), 79 \(Hồ Chí Minh\), 48 \(Đà Nẵng\)/);
    expect(usageError(['--domains', 'traffic,water'])).toBe('--domains: "water" must be one of traffic, environment, energy');
    expect(usageError(['--devices', '0'])).toBe('--devices "0" must be a whole number from 1 to 99999');
    expect(usageError(['--devices', '2.5'])).toMatch(/^--devices/);
    expect(usageError(['--interval', '5'])).toMatch(/^--interval "5" is not a duration; write it with a unit/);
    expect(usageError(['--interval', '10ms'])).toMatch(/^--interval 10ms must be from 100 ms/);
    expect(usageError(['--seed=-1'])).toBe('--seed "-1" must be a whole number from 0 to 4294967295');
    expect(usageError(['--seed', '-1'])).toMatch(/^--seed needs a value/);
    expect(usageError(['--mqtt-url', 'http://x'])).toMatch(/^--mqtt-url "http:\/\/x" must use mqtt:\/\//);
    expect(usageError([], { MQTT_URL: 'not a url' })).toMatch(/^MQTT_URL "not a url" is not a URL/);
    expect(usageError(['--log-level', 'loud'])).toMatch(/^--log-level/);
    expect(usageError(['--device', '3'])).toBe('unknown flag --device');
    expect(usageError(['--devices'])).toMatch(/^--devices needs a value/);
    expect(usageError(['extra'])).toMatch(/^unexpected argument extra/);
    expect(usageError(['--scenario', 'nowhere'])).toMatch(/^--scenario "nowhere" is neither a file nor a shipped scenario \(.*hanoi-winter-rush/);
    expect(usageError(['--scenario', 'quiet-night', '--devices', '3'])).toBe('--devices cannot be combined with --scenario: the scenario file sets it');
    expect(usageError(['--speed', 'fast'])).toMatch(/^--speed "fast" must be a number from 0.01 to 10000/);
    expect(usageError(['--mode', 'mesh'])).toBe('--mode "mesh" must be one of device, gateway');
    expect(usageError(['--faults', 'stuck,gremlins'])).toMatch(/^--faults: "gremlins" must be one of/);
    expect(usageError(['--start', 'tomorrow'])).toMatch(/^--start "tomorrow" must be now/);
    expect(usageError(['--record', 'x.ndjson', '--record-rotate-size', 'big'])).toMatch(/^--record-rotate-size "big" must be a size/);
    expect(usageError(['--gateways', '0'])).toMatch(/^--gateways "0" must be a whole number from 1/);
    expect(usageError(['--threads', 'many'])).toBe('--threads "many" must be a whole number from 1 to 64');
  });

  it('reads durations and sizes', () => {
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration('5')).toBeUndefined();
    expect(parseSize('--x', '100MB')).toBe(104_857_600);
    expect(parseSize('--x', '512kb')).toBe(524_288);
    expect(parseSize('--x', '4096')).toBe(4096);
    expect(() => parseSize('--x', '0')).toThrow(/--x "0" must be a size/);
  });

  it('lists the shipped scenarios', () => {
    expect(shippedScenarioNames()).toEqual(expect.arrayContaining(['hanoi-winter-rush', 'national-50k', 'quiet-night', 'south-grid-fault']));
  });

  it('prints a status line with rate, connected devices, buffers, errors and the scenario clock', () => {
    const stats: SimulationStats = {
      devices: 90,
      connected: 88,
      connections: 90,
      connectionsUp: 88,
      published: 400,
      readings: 412,
      buffered: 7,
      lost: 1,
      errors: 2,
      faults: { dropout: 1, stuck: 0, spike: 3, malformed: 0, wrongTopic: 0, flood: 0 },
      scenarioMs: Date.UTC(2026, 0, 15, 0, 42),
      lagMs: 0,
      progress: 0.25,
    };
    expect(formatStatus(stats, { readings: 41.2, messages: 40 }, new Date(Date.UTC(2026, 6, 1, 2, 4, 28)))).toBe(
      '02:04:28Z  41.2 readings/s (40.0 msg/s)  connected 88/90  published 412  buffered 7  lost 1  errors 2  faults: dropout 1, spike 3  clock 2026-01-15 07:42  25.0%',
    );
  });
});
