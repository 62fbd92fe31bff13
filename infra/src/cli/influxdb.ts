/** Runs a private InfluxDB in the foreground: `pnpm --filter @citypulse/infra influxdb -- --data-dir .data/influxdb --port 8086`. */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Influx } from '../influx-client.js';
import { startInfluxd } from '../influxd.js';

const { values } = parseArgs({ options: { 'data-dir': { type: 'string', default: '.data/influxdb' }, port: { type: 'string', default: '8086' }, database: { type: 'string', default: 'citypulse' }, retention: { type: 'string', default: '30d' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port "${values.port}" must be a port number`);
  process.exit(2);
}
const influxd = await startInfluxd({ dataDir: resolve(process.env.INIT_CWD ?? process.cwd(), values['data-dir']), port, log: (line) => console.log(line) });
const influx = new Influx({ url: influxd.url, database: values.database, retentionPolicy: 'raw', apiVersion: 'v1' });
await influx.ensureDatabase(values.retention);
console.log(`database "${values.database}" with retention policy raw (${values.retention}) ready at ${influxd.url}; Ctrl+C stops it`);
const stop = () => void influxd.stop().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
