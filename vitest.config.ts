import { defineConfig } from 'vitest/config';

/**
 * One test command for the workspace. Unit tests live in each package's test/ folder; e2e/ holds
 * the end-to-end and browser tests, which start real InfluxDB, broker, ingest, api and Chromium.
 */
const unit = (name: string, options: { fileParallelism?: boolean } = {}) => ({ test: { name, root: `./${name}`, include: ['test/**/*.test.ts'], testTimeout: 20_000, ...options } });

export default defineConfig({
  test: {
    projects: [
      unit('contracts'),
      unit('broker'),
      // ingest's fault tests (an InfluxDB outage, SIGKILL) and its pipeline tests each run a broker
      // and an influxd: one file at a time, so they do not starve each other of the 2 cores.
      unit('ingest', { fileParallelism: false }),
      unit('api'),
      unit('simulators'),
      unit('infra'),
      unit('dashboard'),
      {
        test: {
          name: 'e2e',
          root: './e2e',
          include: ['**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // The stack tests share 2 cores with InfluxDB and Chromium: one file at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
