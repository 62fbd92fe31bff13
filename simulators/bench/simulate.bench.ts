/**
 * `npm run bench` (or `pnpm --filter @citypulse/simulators bench`): how many readings per second one
 * simulator process sustains, in each connection mode, and the memory each simulated device costs.
 * The sink is Debian's Mosquitto (C, anonymous, no persistence) on a free port, so the simulator is
 * what is measured; beside it, the same machine's ceiling for MQTT.js itself (pre-serialised
 * payloads on one connection, no model, no JSON) as the reference.
 *
 * Prints a Markdown table for BENCHMARKS.md; `--json FILE` also writes the figures.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { startMosquitto } from '@citypulse/infra';
import { connect } from 'mqtt';
import { resolveScenario, type ScenarioFile } from '../src/scenario.js';
import { heapBytesHere, startSimulation } from '../src/simulation.js';

const MEASURE_S = Number(process.env.BENCH_SECONDS ?? 15);
const WARMUP_S = 3;

interface Row {
  readonly run: string;
  readonly devices: number;
  readonly connections: number;
  readonly threads: number;
  readonly qos: 0 | 1;
  readonly offered: string;
  readonly readingsPerSecond: number;
  readonly messagesPerSecond: number;
  readonly cpuPercent: number;
  readonly bytesPerDevice: number | undefined;
  readonly note: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function national(devicesPerProvince: { traffic: number; environment: number; energy: number }, interval: string, extra: Partial<ScenarioFile> = {}): ScenarioFile {
  return { name: 'bench', seed: 1, defaults: { devices: devicesPerProvince, interval: { traffic: interval, environment: interval, energy: interval } }, provinces: [{ code: 'all' }], ...extra };
}

async function simulatorRun(run: string, mqttUrl: string, file: ScenarioFile, mode: 'device' | 'gateway', qos: 0 | 1, offered: string, gateways?: number, uploadMs = 0, threads: number | 'auto' = 'auto'): Promise<Row> {
  const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-bench-'));
  const base = heapBytesHere();
  const scenario = resolveScenario({ ...file, qos: { traffic: qos, environment: qos, energy: qos } }, { nowMs: Date.now(), mode, uploadMs, ...(gateways ? { gateways } : {}) });
  const simulation = await startSimulation({ mqttUrl, dataDir, scenario, provision: false, connectRatePerSecond: 2000, threads });
  try {
    const devices = simulation.devices.length;
    const connectDeadline = Date.now() + 120_000;
    while (simulation.stats().connected < devices && Date.now() < connectDeadline) await sleep(200);
    await sleep(WARMUP_S * 1000);
    const bytesPerDevice = Math.round(((await simulation.heapBytes()) - base) / devices);
    const s0 = simulation.stats();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    if (scenario.durationMs !== undefined) await Promise.race([simulation.finished, sleep(MEASURE_S * 1000)]);
    else await sleep(MEASURE_S * 1000);
    const seconds = (performance.now() - t0) / 1000;
    const s1 = simulation.stats();
    const cpu = process.cpuUsage(c0);
    const note = [s1.lagMs > 2000 && scenario.speed !== 'max' ? `fell behind: the schedule ran ${(s1.lagMs / 1000).toFixed(0)} s late` : '', s1.buffered > 0 && uploadMs === 0 ? `${s1.buffered} readings buffered at the end` : '', s1.lost > 0 ? `${s1.lost} lost` : '', s1.errors > 0 ? `${s1.errors} errors` : '', s1.connected < devices ? `only ${s1.connected}/${devices} connected` : '']
      .filter(Boolean)
      .join('; ');
    return {
      run,
      devices,
      connections: s1.connections,
      threads: simulation.threads,
      qos,
      offered,
      readingsPerSecond: Math.round((s1.readings - s0.readings) / seconds),
      messagesPerSecond: Math.round((s1.published - s0.published) / seconds),
      cpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / (seconds * 1000)) * 100),
      bytesPerDevice,
      note: note || 'kept up',
    };
  } finally {
    await simulation.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** MQTT.js alone: pre-serialised 250-byte payloads on one connection, a window of 2,000 in flight. */
async function rawRun(mqttUrl: string, qos: 0 | 1): Promise<Row> {
  const client = connect(mqttUrl, { protocolVersion: 4, clientId: `bench-raw-${qos}`, reconnectPeriod: 0 });
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const payload = JSON.stringify({ ts: Date.now(), seq: 1, pm25: 42.5, pm10: 71.2, no2: 38.1, o3: 61.2, co: 912.4, so2: 8.1, temperature: 27.3, relativeHumidity: 0.81, LAeq: 64.2, pad: 'x'.repeat(60) });
  const topics = Array.from({ length: 1000 }, (_, i) => `city/01/environment/bench-${i}/telemetry`);
  let sent = 0;
  let done = 0;
  let stop = false;
  const window = 2000;
  // MQTT.js waits for 'drain' once per message written to a full socket: up to the window of them.
  client.stream.setMaxListeners(window + 100);
  const pump = () => {
    while (!stop && sent - done < window) {
      sent++;
      client.publish(topics[sent % topics.length] as string, payload, { qos }, () => {
        done++;
        if (sent - done < window / 2) pump();
      });
    }
  };
  pump();
  await sleep(WARMUP_S * 1000);
  const d0 = done;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(MEASURE_S * 1000);
  const seconds = (performance.now() - t0) / 1000;
  const rate = Math.round((done - d0) / seconds);
  const cpu = process.cpuUsage(c0);
  stop = true;
  await client.endAsync(true);
  return { run: 'MQTT.js alone (reference)', devices: 0, connections: 1, threads: 1, qos, offered: 'as fast as acknowledged', readingsPerSecond: rate, messagesPerSecond: rate, cpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / (seconds * 1000)) * 100), bytesPerDevice: undefined, note: `${payload.length}-byte payloads, no model, no JSON` };
}

async function main(): Promise<void> {
  const jsonIndex = process.argv.indexOf('--json');
  const jsonFile = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined;
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-bench-mosquitto-'));
  const mosquitto = await startMosquitto({ dataDir: dir, log: (line) => console.error(line) });
  const rows: Row[] = [];
  const log = (row: Row) => {
    rows.push(row);
    console.error(`${row.run} (${row.threads} thread${row.threads === 1 ? '' : 's'}) qos ${row.qos}: ${row.readingsPerSecond} readings/s, ${row.messagesPerSecond} msg/s, cpu ${row.cpuPercent} %, ${row.bytesPerDevice ?? '-'} B/device; ${row.note}`);
  };
  try {
    const n50k = { traffic: 600, environment: 300, energy: 571 }; // × 34 = 50,014
    const n10k = { traffic: 120, environment: 60, energy: 115 }; // × 34 = 10,030
    log(await simulatorRun('gateway mode, 50,014 devices at 1 Hz, gateways upload every 5 s (national-50k)', mosquitto.url, national(n50k, '1s'), 'gateway', 1, '50,014/s', 10, 5000));
    log(await simulatorRun('the same in one thread', mosquitto.url, national(n50k, '1s'), 'gateway', 1, '50,014/s', 10, 5000, 1));
    log(await simulatorRun('gateway mode, 50,014 devices at 2 Hz, gateways upload every 5 s (ceiling)', mosquitto.url, national(n50k, '500ms'), 'gateway', 1, '100,028/s', 10, 5000));
    log(await simulatorRun('gateway mode, 50,014 devices at 1 Hz, one message per reading', mosquitto.url, national(n50k, '1s'), 'gateway', 1, '50,014/s', 10));
    log(await simulatorRun('gateway mode, 50,014 devices at 1 Hz, one message per reading', mosquitto.url, national(n50k, '1s'), 'gateway', 0, '50,014/s', 10));
    log(await simulatorRun('gateway mode, 50,014 devices, speed max', mosquitto.url, national(n50k, '1s', { speed: 'max', duration: '1h', timestamps: 'scenario' }), 'gateway', 1, 'as fast as acknowledged', 10));
    log(await simulatorRun('device mode, 10,030 devices at 1 Hz, one connection each', mosquitto.url, national(n10k, '1s'), 'device', 1, '10,030/s'));
    log(await simulatorRun('device mode, 10,030 devices, speed max', mosquitto.url, national(n10k, '1s', { speed: 'max', duration: '1h', timestamps: 'scenario' }), 'device', 1, 'as fast as acknowledged'));
    log(await rawRun(mosquitto.url, 1));
    log(await rawRun(mosquitto.url, 0));
  } finally {
    await mosquitto.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, sink: Debian Mosquitto`;
  console.log(`Simulator throughput (${machine}; ${MEASURE_S} s per run after ${WARMUP_S} s warm-up)\n`);
  console.log('| run | devices | connections | threads | QoS | offered | readings/s | MQTT msg/s | simulator CPU | memory per device | note |');
  console.log('|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|');
  for (const r of rows) {
    console.log(`| ${r.run} | ${r.devices || '–'} | ${r.connections} | ${r.threads} | ${r.qos} | ${r.offered} | ${r.readingsPerSecond.toLocaleString('en-US')} | ${r.messagesPerSecond.toLocaleString('en-US')} | ${r.cpuPercent} % | ${r.bytesPerDevice === undefined ? '–' : `${(r.bytesPerDevice / 1024).toFixed(1)} KiB`} | ${r.note} |`);
  }
  if (jsonFile) await writeFile(jsonFile, `${JSON.stringify({ machine, measureSeconds: MEASURE_S, rows }, null, 1)}\n`);
}

main().catch((err: unknown) => {
  console.error('bench failed:', err);
  process.exitCode = 1;
});
