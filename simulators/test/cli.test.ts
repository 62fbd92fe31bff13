import { describe, expect, it } from 'vitest';
import { formatStatus, parseCli, parseDuration, UsageError } from '../src/cli/options.js';
import { SIMULATION_DEFAULTS } from '../src/index.js';

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
  it('parses every flag', () => {
    const command = parse(['--', '--mqtt-url', 'mqtt://broker:1884', '--data-dir', 'var/data', '--provinces', '01, 79,48', '--domains', 'traffic,energy', '--devices', '12', '--interval', '500ms', '--seed', '7']);
    expect(command).toEqual({
      help: false,
      options: {
        mqttUrl: 'mqtt://broker:1884',
        dataDir: '/home/op/citypulse/var/data',
        provinces: ['01', '79', '48'],
        domains: ['traffic', 'energy'],
        devicesPerProvince: 12,
        intervalMs: 500,
        seed: 7,
        statusIntervalMs: 10_000,
        logLevel: 'info',
      },
    });
  });

  it('falls back to MQTT_URL and DATA_DIR, then to defaults', () => {
    const command = parse([], { MQTT_URL: 'mqtt://10.0.0.5:1883', DATA_DIR: '/srv/citypulse' });
    expect(command.help || command.options).toMatchObject({ mqttUrl: 'mqtt://10.0.0.5:1883', dataDir: '/srv/citypulse', provinces: ['01', '79', '48'], intervalMs: 5000, seed: SIMULATION_DEFAULTS.seed });
    const all = parse(['--provinces', 'all']);
    expect(all.help || all.options.provinces).toHaveLength(34);
    expect(parse(['-h'])).toEqual({ help: true });
  });

  it('names the flag in every error', () => {
    expect(usageError(['--provinces', '01,99'])).toMatch(/^--provinces: "99" is not a province code; use codes such as 01 \(Hà Nội\), 79 \(Hồ Chí Minh\), 48 \(Đà Nẵng\)/);
    expect(usageError(['--domains', 'traffic,water'])).toBe('--domains: "water" must be one of traffic, environment, energy');
    expect(usageError(['--devices', '0'])).toBe('--devices "0" must be a whole number from 1 to 999');
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
  });

  it('reads durations with units', () => {
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('5')).toBeUndefined();
    expect(parseDuration('fast')).toBeUndefined();
  });

  it('prints one status line with rate, connections and errors', () => {
    const line = formatStatus({ connected: 8, published: 1200, errors: 2 }, 9, 1.8, new Date(Date.UTC(2026, 0, 1, 3, 4, 5)));
    expect(line).toBe('03:04:05Z  1.8 msg/s  connected 8/9  published 1200  errors 2');
  });
});
