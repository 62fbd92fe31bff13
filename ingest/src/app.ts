import { Point, type WriteApi } from '@influxdata/influxdb-client';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import {
  decodeTelemetry,
  DEFAULT_DECODE_LIMITS,
  enrichReading,
  flattenReading,
  parseDeviceTopic,
  TOPIC_FILTERS,
  type DecodeLimits,
  type Domain,
  type Fields,
  type Reading,
  type RejectionCode,
} from '@citypulse/contracts';
import type { DeviceRegistry } from '@citypulse/broker/registry';
import type { Influx } from '@citypulse/infra';

/** Ingest knobs in one place (units in the names). */
export const INGEST_DEFAULTS = {
  batchSize: 5000, // lines per InfluxDB write; the server, not the client, is the limit past this
  flushIntervalMs: 1000,
  maxRetries: 8,
  /** Retry buffer of the InfluxDB client: past it the client drops its OLDEST lines, so keep it large. */
  maxBufferLines: 500_000,
  payloadLogChars: 200,
} as const;

export interface IngestOptions {
  readonly mqttUrl: string;
  readonly username: string;
  readonly password: string;
  /** Stable id: the broker keeps this persistent session's QoS 1 queue while ingest is away. */
  readonly clientId: string;
  readonly influx: Influx;
  readonly registry: DeviceRegistry;
  readonly logger: Logger;
  readonly decodeLimits?: DecodeLimits;
  readonly batchSize?: number;
  readonly flushIntervalMs?: number;
  readonly now?: () => number;
}

export interface IngestCounters {
  received: number;
  /** Readings handed to the InfluxDB writer. */
  accepted: number;
  /** Readings confirmed written by InfluxDB. */
  written: number;
  writeFailures: number;
  rejected: Partial<Record<RejectionCode, number>>;
}

export interface IngestPipeline {
  readonly counters: IngestCounters;
  readonly mqtt: MqttClient;
  /** Handles one MQTT message; exported for tests of the pipeline without a broker. */
  handleMessage(topic: string, payload: Buffer): void;
  /** Writes everything buffered now. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * MQTT → validate → enrich → InfluxDB. Subscribes with a persistent session at QoS 1; every
 * message is validated against the contract; an invalid one is counted and logged with its code
 * and never written, and the next valid one is.
 */
export async function startIngest(options: IngestOptions): Promise<IngestPipeline> {
  const { influx, registry, logger } = options;
  const limits = options.decodeLimits ?? DEFAULT_DECODE_LIMITS;
  const now = options.now ?? Date.now;
  const counters: IngestCounters = { received: 0, accepted: 0, written: 0, writeFailures: 0, rejected: {} };

  const writeApi: WriteApi = influx.writeApi({
    batchSize: options.batchSize ?? INGEST_DEFAULTS.batchSize,
    flushInterval: options.flushIntervalMs ?? INGEST_DEFAULTS.flushIntervalMs,
    maxRetries: INGEST_DEFAULTS.maxRetries,
    maxBufferLines: INGEST_DEFAULTS.maxBufferLines,
    gzipThreshold: 64 * 1024,
    writeSuccess(lines) {
      counters.written += lines.length;
    },
    writeFailed(error, lines, attempt) {
      counters.writeFailures++;
      logger.warn({ code: 'E_UPSTREAM', err: error, lines: lines.length, attempt }, 'InfluxDB write failed; will retry');
    },
  });

  const reject = (code: RejectionCode, topic: string, message: string, payload: Buffer, count = 1) => {
    counters.rejected[code] = (counters.rejected[code] ?? 0) + count;
    logger.warn({ code, topic: topic.slice(0, 200), reason: message, payload: payload.toString('utf8', 0, INGEST_DEFAULTS.payloadLogChars) }, 'message rejected');
  };

  const handleMessage = (topic: string, payload: Buffer): void => {
    counters.received++;
    const parsedTopic = parseDeviceTopic(topic);
    if (!parsedTopic.ok) return reject(parsedTopic.error.code, topic, parsedTopic.error.message, payload);
    const address = parsedTopic.value;
    if (address.channel !== 'telemetry') return; // status is the api's business
    const decoded = decodeTelemetry(address.domain, payload, now(), limits);
    if (!decoded.ok) return reject(decoded.error.code, topic, decoded.error.message, payload);
    for (const r of decoded.value.rejected) reject(r.code, topic, r.message, payload);

    const device = registry.device(address.deviceId);
    for (const reading of decoded.value.readings) {
      const derived = enrichReading(address.domain, reading, device?.profile);
      writeApi.writePoint(toPoint(address.domain, address.province, address.deviceId, device?.kind ?? 'unknown', reading, { ...flattenReading(reading), ...(derived as Fields) }));
      counters.accepted++;
    }
  };

  const client = mqtt.connect(options.mqttUrl, {
    clientId: options.clientId,
    username: options.username,
    password: options.password,
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
  });
  client.on('message', (topic, payload) => handleMessage(topic, payload));
  client.on('error', (err) => logger.warn({ err }, 'MQTT error'));
  client.on('reconnect', () => logger.debug('MQTT reconnecting'));

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      client.end(true);
      reject(err);
    };
    client.once('error', onError);
    client.once('connect', (connack) => {
      client.off('error', onError);
      // A resumed session already holds the subscription; subscribing again is harmless and covers a new one.
      client.subscribe(TOPIC_FILTERS.allTelemetry, { qos: 1 }, (err, granted) => {
        if (err) return reject(err);
        if (granted?.some((g) => g.qos === 128)) return reject(new Error(`broker refused subscription to ${TOPIC_FILTERS.allTelemetry}`));
        logger.info({ sessionPresent: connack.sessionPresent }, 'ingest subscribed');
        resolve();
      });
    });
  });

  return {
    counters,
    mqtt: client,
    handleMessage,
    flush: () => writeApi.flush(true),
    async close() {
      await client.endAsync();
      await writeApi.close().catch((err: unknown) => logger.error({ err }, 'final InfluxDB flush failed'));
    },
  };
}

function toPoint(domain: Domain, province: string, deviceId: string, kind: string, reading: Reading, fields: Fields): Point {
  const point = new Point(domain).tag('province', province).tag('device', deviceId).tag('kind', kind).timestamp(reading.ts);
  for (const [name, value] of Object.entries(fields)) {
    // One type per field, always: numbers are floats (InfluxDB refuses a field whose type changes).
    if (typeof value === 'number') point.floatField(name, value);
    else if (typeof value === 'boolean') point.booleanField(name, value);
    else point.stringField(name, value);
  }
  return point;
}
