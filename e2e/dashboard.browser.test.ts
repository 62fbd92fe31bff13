import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, provinceByCode } from '@citypulse/contracts';
import { DASHBOARD_DIST, startStack, type Stack } from './stack.js';

/**
 * The built dashboard in real Chromium (Debian's, software WebGL) against the whole stack:
 * InfluxDB, broker, ingest, api and simulated devices. Pixels are checked in screenshots because
 * a map that failed to draw still fires `load` and answers queryRenderedFeatures. Every request
 * that leaves the stack's origin is blocked and recorded: the dashboard must work offline.
 */

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
/** Flags that give headless Chromium working WebGL (SwiftShader) as root (docs: environment.md). */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-swiftshader',
];
const VIEWPORT = { width: 1280, height: 800 };
const LIVE_TIMEOUT_MS = 60_000;
/**
 * Every environment station in Đà Nẵng (48) raises a critical alert on its first reading, so the
 * alert list has entries from the start and a test device raises one while the page watches.
 */
const ALERT_RULES = `version: 1
rules:
  - id: e2e-aqi
    kind: threshold
    domain: environment
    field: vnAqi
    above: 0
    severity: critical
    provinces: ["48"]
`;
/** A device whose name is markup: it must show as text everywhere, and never run. */
const HOSTILE_NAME = '<img src=x onerror=alert(1)>';
const HOSTILE_ID = 'e2e-hostile-name';

/** The dashboard's read-only test hook (dashboard/src/hook.ts), as far as this test uses it. */
interface Hook {
  readonly map: {
    loaded(): boolean;
    isMoving(): boolean;
    areTilesLoaded(): boolean;
    getCenter(): { lng: number; lat: number };
    getLayoutProperty(layer: string, name: string): unknown;
    getFeatureState(feature: { source: string; id: string }): Record<string, unknown>;
    queryRenderedFeatures(options: { layers: string[] }): { properties: Record<string, unknown> }[];
  };
  readonly engine: string;
  liveCount(): number;
  lastFrameAt(): number | null;
  stats(): { framesReceived: number; readingsReceived: number; flushes: number; lastFlushMs: number };
  mode(): 'live' | 'replay';
  replayClock(): number | null;
  layers(): { domains: string[]; heatmap: boolean; scale: string; choropleth: string; base: string };
  activeAlerts(): string[];
  featureColors(): Record<string, string>;
  readingTimes(): Record<string, number>;
  devicePoint(id: string): { x: number; y: number } | null;
  mapColors(): { sea: string; land: string };
  selectedDevice(): string | null;
}
type HookWindow = Window & { __citypulse?: Hook };

type Rgb = readonly [number, number, number];

/** '#rrggbb' or 'rgb(r,g,b)' → [r, g, b]. */
function parseColor(color: string): Rgb {
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
  if (hex) return [parseInt(hex[1] ?? '0', 16), parseInt(hex[2] ?? '0', 16), parseInt(hex[3] ?? '0', 16)];
  const rgb = /^rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)/i.exec(color);
  if (rgb) return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
  throw new Error(`cannot parse colour "${color}"`);
}

/**
 * Counts the pixels of a PNG that match each colour (±tolerance per channel). Decoding happens in
 * the page (createImageBitmap), so the test needs no PNG library.
 */
async function countColors(page: Page, png: Buffer, colors: readonly Rgb[], tolerance = 3): Promise<{ total: number; counts: number[] }> {
  return page.evaluate(
    async ({ base64, colors, tolerance }) => {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext('2d');
      if (!ctx) throw new Error('no 2d context');
      ctx.drawImage(bitmap, 0, 0);
      const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
      const counts = colors.map(() => 0);
      for (let i = 0; i < data.length; i += 4) {
        const r = data[i] ?? 0;
        const g = data[i + 1] ?? 0;
        const b = data[i + 2] ?? 0;
        for (let c = 0; c < colors.length; c++) {
          const [cr, cg, cb] = colors[c] ?? [0, 0, 0];
          if (Math.abs(r - cr) <= tolerance && Math.abs(g - cg) <= tolerance && Math.abs(b - cb) <= tolerance) {
            counts[c] = (counts[c] ?? 0) + 1;
            break;
          }
        }
      }
      return { total: bitmap.width * bitmap.height, counts };
    },
    { base64: png.toString('base64'), colors: colors.map((c) => [...c] as [number, number, number]), tolerance },
  );
}

/** Re-evaluates `check` until it returns a value (polling, no fixed sleeps); fails with the last reason. */
async function eventually<T>(check: () => Promise<T | string>, timeoutMs: number, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let reason = 'not evaluated';
  while (Date.now() < deadline) {
    const result = await check();
    if (typeof result !== 'string') return result;
    reason = result;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms: ${reason}`);
}

describe('dashboard in Chromium against the whole stack', () => {
  let stack: Stack | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let origin: string;
  /** When the simulated devices started publishing (the replay starts there). */
  let startedAt = 0;
  const outside: string[] = [];
  const pageErrors: string[] = [];
  const dialogs: string[] = [];

  /**
   * A browser context that can reach `allowedOrigin` only: every other request (from the page or
   * the map's web worker) is aborted and recorded in `record`.
   */
  const offlineContext = async (allowedOrigin: string, record: string[]): Promise<{ context: BrowserContext; page: Page }> => {
    if (!browser) throw new Error('no browser');
    const ctx = await browser.newContext({ viewport: VIEWPORT, serviceWorkers: 'block' });
    // Context-wide, so requests from the map's web worker are covered as well as the page's.
    await ctx.route('**/*', async (route) => {
      const url = route.request().url();
      if (new URL(url).origin === allowedOrigin) return route.continue();
      record.push(url);
      return route.abort('blockedbyclient');
    });
    const p = await ctx.newPage();
    p.on('websocket', (ws) => {
      if (new URL(ws.url()).host !== new URL(allowedOrigin).host) record.push(ws.url());
    });
    p.on('pageerror', (error) => pageErrors.push(error.message));
    p.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    return { context: ctx, page: p };
  };

  /** Signs in on the login screen and waits for the map to load. */
  const signIn = async (p: Page, url: string, account: { username: string; password: string }): Promise<void> => {
    await p.goto(url);
    await p.fill('#login-username', account.username);
    await p.fill('#login-password', account.password);
    await p.click('form.login-form button[type=submit]');
    await p.waitForFunction(() => (window as HookWindow).__citypulse?.map.loaded() === true, null, { timeout: 30_000 });
  };

  const mapCanvas = () => page.locator('.map canvas').first();
  /** Runs `fn` in the page with the dashboard's hook (Playwright serialises functions the same way). */
  const hook = <T>(fn: (h: Hook) => T): Promise<T> => page.evaluate<T>(`(${fn.toString()})(window.__citypulse)`);

  /** Waits until the map stands still and has drawn everything it has. */
  const settled = () =>
    page.waitForFunction(() => {
      const h = (window as HookWindow).__citypulse;
      return h !== undefined && h.map.loaded() && !h.map.isMoving() && h.map.areTilesLoaded();
    });

  beforeAll(async () => {
    if (!existsSync(join(DASHBOARD_DIST, 'index.html'))) {
      throw new Error(`${join(DASHBOARD_DIST, 'index.html')} is missing: build the dashboard first with \`pnpm --filter @citypulse/dashboard build\``);
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    stack = await startStack({ simulate: { provinces: ['01', '79', '48'], devicesPerProvince: 2, intervalMs: 1000 }, alertRules: ALERT_RULES });
    startedAt = Date.now();
    origin = new URL(stack.apiUrl).origin;
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
    ({ page } = await offlineContext(origin, outside));
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('logs in and draws the provinces on the map', async () => {
    await page.goto(stack?.apiUrl ?? '');
    await page.fill('#login-username', stack?.operator.username ?? '');
    await page.fill('#login-password', 'not-the-password');
    await page.click('form.login-form button[type=submit]');
    await expect.poll(() => page.locator('[data-testid=login-error]').textContent()).toMatch(/\S/);

    await page.fill('#login-password', stack?.operator.password ?? '');
    await page.click('form.login-form button[type=submit]');
    await page.waitForFunction(() => (window as HookWindow).__citypulse?.map.loaded() === true, null, { timeout: 30_000 });
    await settled();
    expect(await page.getByText('VN_AQI (chỉ số tức thời)').count()).toBeGreaterThan(0);
    expect(await page.locator('.province-label').count()).toBe(34);

    const palette = await hook((h) => h.mapColors());
    const [land, sea] = [parseColor(palette.land), parseColor(palette.sea)];
    // Polls screenshots: the first frames after `load` may not have every province yet.
    const shares = await eventually(async () => {
      const { total, counts } = await countColors(page, await mapCanvas().screenshot(), [land, sea]);
      const landShare = (counts[0] ?? 0) / total;
      const seaShare = (counts[1] ?? 0) / total;
      // Vietnam is long and thin: at country scale its provinces fill about 5 % of the canvas.
      return landShare > 0.02 && seaShare > 0.3 ? { landShare, seaShare } : `province fill ${(landShare * 100).toFixed(1)} %, sea ${(seaShare * 100).toFixed(1)} % of the canvas`;
    }, 20_000);
    expect(shares.landShare).toBeGreaterThan(0.02);
    expect(shares.seaShare).toBeGreaterThan(0.3);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-map.png') });
  });

  it('shows live points that keep changing', async () => {
    await page.waitForFunction(() => ((window as HookWindow).__citypulse?.liveCount() ?? 0) > 0, null, { timeout: LIVE_TIMEOUT_MS });
    await expect.poll(() => page.locator('[data-testid=live-count]').textContent()).toMatch(/[1-9]\d*\/\d+/);

    // The points are drawn in their state colours (VN_AQI band, LOS, load).
    const drawn = await eventually(async () => {
      const colors = [...new Set(Object.values(await hook((h) => h.featureColors())))].filter((c) => c !== '#9e9e9e');
      if (colors.length === 0) return 'no device has a state colour yet';
      const { counts } = await countColors(page, await mapCanvas().screenshot(), colors.map(parseColor), 2);
      const pixels = counts.reduce((a, b) => a + b, 0);
      return pixels >= 20 ? { colors, pixels } : `only ${pixels} pixels in the device colours ${colors.join(', ')}`;
    }, 20_000);
    expect(drawn.pixels).toBeGreaterThanOrEqual(20);

    // ... and change: new frames arrive and at least one device's reading moves on.
    const before = await hook((h) => ({ frameAt: h.lastFrameAt(), times: h.readingTimes() }));
    await page.waitForFunction(
      (prev) => {
        const h = (window as HookWindow).__citypulse;
        if (!h) return false;
        const frameAt = h.lastFrameAt();
        const times = h.readingTimes();
        return frameAt !== null && frameAt > (prev.frameAt ?? 0) && Object.entries(times).some(([id, ts]) => prev.times[id] !== undefined && ts > (prev.times[id] ?? 0));
      },
      before,
      { timeout: 30_000 },
    );
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png') });
  });

  it('flies to the province chosen in the picker', async () => {
    const hcmc = provinceByCode('79');
    if (!hcmc) throw new Error('province 79 missing from the catalogue');
    const [west, south, east, north] = hcmc.bbox;
    const target = { lng: (west + east) / 2, lat: (south + north) / 2 };
    const start = await hook((h) => h.map.getCenter());
    const distance = (c: { lng: number; lat: number }) => Math.hypot(c.lng - target.lng, c.lat - target.lat);

    await page.selectOption('select.province-picker', '79');
    await page.waitForFunction(() => (window as HookWindow).__citypulse?.map.isMoving() === true, null, { timeout: 5_000 }).catch(() => undefined);
    await settled();
    const end = await hook((h) => h.map.getCenter());
    expect(distance(end)).toBeLessThan(distance(start) / 4);
    expect(end.lng).toBeGreaterThan(west);
    expect(end.lng).toBeLessThan(east);
    expect(end.lat).toBeGreaterThan(south);
    expect(end.lat).toBeLessThan(north);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-province.png') });
  });

  it('opens the device panel with its values and history on click', async () => {
    // An environment station in Hồ Chí Minh with a reading (from the api), whose point is not
    // covered by the legend or the controls.
    const device = await page.evaluate(async () => {
      const response = await fetch('/api/v1/devices?province=79&domain=environment');
      const body = (await response.json()) as { devices: { id: string; name: string; latest: unknown }[] };
      const canvas = document.querySelector('.map canvas');
      const rect = canvas?.getBoundingClientRect();
      for (const d of body.devices) {
        const point = (window as HookWindow).__citypulse?.devicePoint(d.id);
        if (d.latest === null || !point || !rect) continue;
        const x = rect.left + point.x;
        const y = rect.top + point.y;
        if (document.elementFromPoint(x, y) === canvas) return { id: d.id, name: d.name, x, y };
      }
      return null;
    });
    if (!device) throw new Error('no visible environment device with a reading in province 79');
    await page.mouse.click(device.x, device.y);

    const panel = page.locator('[data-testid=device-panel]');
    await expect.poll(() => panel.getAttribute('data-device-id')).toBe(device.id);
    await expect.poll(() => panel.locator('.panel-title').textContent()).toBe(device.name);
    expect(await panel.locator('[data-testid=device-id]').textContent()).toBe(device.id);
    await expect.poll(() => panel.locator('[data-testid=headline]').textContent()).toMatch(/^VN_AQI \d+$/);
    await expect.poll(() => panel.locator('.panel-values').textContent()).toContain('µg/m³');
    // History for the last hour, drawn by uPlot once the api answered.
    await expect.poll(() => panel.locator('.panel-history-status').textContent(), { timeout: 20_000 }).toMatch(/điểm|Chưa có số liệu/);
    expect(await panel.locator('.panel-history-status').textContent()).toMatch(/\d+ điểm/);
    expect(await panel.locator('.history-chart canvas').count()).toBeGreaterThan(0);
    expect(await hook((h) => h.selectedDevice())).toBe(device.id);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-panel.png') });
  });

  it('shows the KPIs of the country and of the chosen province', async () => {
    await page.selectOption('select.province-picker', '');
    await settled();
    // Ingest publishes each province's summary every few seconds.
    await expect.poll(() => page.locator('[data-testid=kpi-online]').textContent(), { timeout: 30_000 }).toMatch(/[1-9]\d*\s*\/\s*\d+/);
    await expect.poll(() => page.locator('[data-testid=kpi-aqi]').textContent()).toMatch(/\d/);
    await expect.poll(() => page.locator('[data-testid=kpi-load]').textContent()).toMatch(/%/);
    await page.selectOption('select.province-picker', '79');
    await expect.poll(() => page.locator('[data-testid=kpi-scope]').textContent()).toContain('Hồ Chí Minh');
    await page.selectOption('select.province-picker', '');
    await settled();
  });

  it('toggles layers: domains, the air-quality scale, the heatmap and the province choropleth', async () => {
    /** Devices drawn (a cluster counts its members), by domain where a point is unclustered. */
    const drawn = () =>
      hook((h) => {
        // A feature can be returned once per tile it touches: each cluster and device counts once.
        const seen = new Set<string>();
        let total = 0;
        for (const f of h.map.queryRenderedFeatures({ layers: ['devices', 'clusters'] })) {
          const key = typeof f.properties.cluster_id === 'number' ? `c${f.properties.cluster_id}` : `d${String(f.properties.deviceId)}`;
          if (seen.has(key)) continue;
          seen.add(key);
          total += typeof f.properties.point_count === 'number' ? f.properties.point_count : 1;
        }
        return { total };
      });
    const environment = (await page.evaluate(async () => ((await (await fetch('/api/v1/devices?domain=environment')).json()) as { total: number }).total));
    const all = await eventually(async () => {
      const d = await drawn();
      return d.total > environment ? d : `only ${d.total} devices drawn`;
    }, 20_000);

    await page.uncheck('[data-testid=layer-environment]');
    await expect.poll(async () => (await drawn()).total).toBe(all.total - environment);
    expect((await hook((h) => h.layers())).domains).not.toContain('environment');
    await page.check('[data-testid=layer-environment]');
    await expect.poll(async () => (await drawn()).total).toBe(all.total);

    // The US EPA scale is offered, and labelled as not VN_AQI wherever it is shown.
    await page.selectOption('[data-testid=layer-scale]', 'epa');
    await expect.poll(() => page.locator('[data-testid=epa-note]').isVisible()).toBe(true);
    expect(await page.locator('[data-testid=layers]').textContent()).toContain('US EPA AQI');
    expect(await page.locator('[data-testid=layers]').textContent()).toContain('Kém cho nhóm nhạy cảm');
    await page.selectOption('[data-testid=layer-scale]', 'vn');
    await expect.poll(() => page.locator('[data-testid=epa-note]').count()).toBe(0);

    await page.check('[data-testid=layer-heatmap]');
    expect(await hook((h) => h.map.getLayoutProperty('aqi-heatmap', 'visibility'))).toBe('visible');
    await page.selectOption('[data-testid=layer-choropleth]', 'online');
    await expect.poll(() => hook((h) => h.map.getFeatureState({ source: 'provinces', id: '79' }).color)).toMatch(/^#|^rgb/);
    expect(await hook((h) => h.map.getLayoutProperty('province-choropleth', 'visibility'))).toBe('visible');
    // A province without devices has no figure and stays uncoloured.
    expect(await hook((h) => h.map.getFeatureState({ source: 'provinces', id: '11' }).color ?? null)).toBeNull();
    await settled();
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-layers.png') });
    await page.uncheck('[data-testid=layer-heatmap]');
    await page.selectOption('[data-testid=layer-choropleth]', 'none');
    expect(await hook((h) => h.map.getLayoutProperty('aqi-heatmap', 'visibility'))).toBe('none');
  });

  it('shows an alert as it is raised, escaped, and an operator acknowledges it with a note', async () => {
    if (!stack) throw new Error('no stack');
    // Stations in Đà Nẵng raised alerts at their first reading: the list has them on arrival.
    await expect.poll(() => page.locator('[data-testid=alert-item]').count(), { timeout: 30_000 }).toBeGreaterThan(0);

    // A new device with a hostile name publishes as a real device would; its alert arrives live.
    const { secret } = await stack.provisionDevice({ id: HOSTILE_ID, province: '48', domain: 'environment', name: HOSTILE_NAME });
    const device = await mqtt.connectAsync(stack.mqttUrl, { clientId: HOSTILE_ID, username: HOSTILE_ID, password: secret, protocolVersion: 4, reconnectPeriod: 0 });
    try {
      await device.publishAsync(deviceTopic({ province: '48', domain: 'environment', deviceId: HOSTILE_ID }, 'telemetry'), JSON.stringify({ ts: Date.now(), seq: 1, pm25: 180, pm10: 200 }), { qos: 1 });
    } finally {
      await device.endAsync();
    }
    const item = page.locator(`[data-testid=alert-item][data-alert-id^="e2e-aqi|${HOSTILE_ID}|"]`);
    await expect.poll(() => item.count(), { timeout: 30_000 }).toBe(1);
    expect(await item.getAttribute('data-severity')).toBe('critical');
    // The name shows as the text it is once the dashboard has the device (it refetches the list).
    await expect.poll(() => item.textContent(), { timeout: 30_000 }).toContain(HOSTILE_NAME);
    expect(await page.locator('img[src="x"]').count()).toBe(0);

    await item.locator('[data-testid=alert-ack]').click();
    await item.locator('[data-testid=alert-ack-note]').fill('Đã cử đội kiểm tra <b>hiện trường</b>');
    await item.locator('[data-testid=alert-ack-confirm]').click();
    await expect.poll(() => item.locator('[data-testid=alert-acked]').textContent()).toContain('Đã cử đội kiểm tra <b>hiện trường</b>');
    expect(await item.locator('[data-testid=alert-acked]').textContent()).toContain(stack.operator.username);
    expect(await item.locator('[data-testid=alert-ack]').count()).toBe(0);
    expect(await page.locator('b').count()).toBe(0);
    // Stored by the api: the acknowledgement is part of the active alert now.
    const stored = await page.evaluate(async (id) => {
      const body = (await (await fetch(`/api/v1/alerts/active?device=${encodeURIComponent(id)}`)).json()) as { alerts: { ack: { note: string } | null }[] };
      return body.alerts[0]?.ack?.note ?? null;
    }, HOSTILE_ID);
    expect(stored).toBe('Đã cử đội kiểm tra <b>hiện trường</b>');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-alerts.png') });
  });

  it('escapes device text in the search, the panel and the map popup', async () => {
    await page.locator('[data-testid=device-search]').fill('hostile');
    const option = page.locator('[data-testid=search-option]').first();
    await expect.poll(() => option.textContent()).toContain(HOSTILE_NAME);
    await option.click();
    const panel = page.locator('[data-testid=device-panel]');
    await expect.poll(() => panel.getAttribute('data-device-id')).toBe(HOSTILE_ID);
    expect(await panel.locator('.panel-title').textContent()).toBe(HOSTILE_NAME);
    await settled();

    const point = await hook((h) => h.devicePoint('e2e-hostile-name'));
    const box = await mapCanvas().boundingBox();
    if (!point || !box) throw new Error('the hostile device is not on the map');
    await page.mouse.move(box.x + point.x, box.y + point.y);
    const popup = page.locator('[data-testid=map-popup]');
    await expect.poll(() => popup.getAttribute('data-device-id')).toBe(HOSTILE_ID);
    expect(await popup.locator('.popup-name').textContent()).toBe(HOSTILE_NAME);
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(dialogs).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-escaped.png') });
    await page.keyboard.press('Escape');
    await page.mouse.move(box.x + 5, box.y + box.height - 5);
  });

  it('is usable with the keyboard: "/" focuses the search, Enter picks, Escape closes', async () => {
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    await page.keyboard.press('/');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('device-search');
    await page.keyboard.type('hostile');
    await expect.poll(() => page.locator('[data-testid=search-option]').count()).toBeGreaterThan(0);
    await page.keyboard.press('Enter');
    await expect.poll(() => hook((h) => h.selectedDevice())).toBe(HOSTILE_ID);
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    await page.keyboard.press('Escape');
    await expect.poll(() => hook((h) => h.selectedDevice())).toBeNull();
    // An alert item takes the focus and opens its device with Enter.
    const first = page.locator('[data-testid=alert-item]').first();
    await first.focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => hook((h) => h.selectedDevice())).not.toBeNull();
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    await page.keyboard.press('Escape');
  });

  it('replays the last minutes: the map follows the replay clock, then returns to live', async () => {
    await page.selectOption('select.province-picker', '');
    await page.click('[data-testid=replay-toggle]');
    // From just before the simulation started to now, typed in Vietnam time as an operator would.
    const vietnamTime = (ms: number) => new Date(ms + 7 * 3_600_000).toISOString().slice(0, 19);
    await page.fill('[data-testid=replay-from]', vietnamTime(startedAt - 5_000));
    await page.fill('[data-testid=replay-to]', vietnamTime(Date.now()));
    // The simulation has run for a few tens of seconds by now: 2× plays it in about as many seconds.
    await page.selectOption('[data-testid=replay-speed]', '2');
    await page.click('[data-testid=replay-play]');
    await page.waitForFunction(() => (window as HookWindow).__citypulse?.mode() === 'replay', null, { timeout: 20_000 });
    const first = await eventually(async () => {
      const s = await hook((h) => ({ clock: h.replayClock(), times: h.readingTimes() }));
      return s.clock !== null && Object.keys(s.times).length > 0 ? { clock: s.clock, times: s.times } : 'no replayed reading yet';
    }, 30_000);
    // Every reading drawn is from the replay: none is ahead of its clock (a frame's clock is at most a tick behind).
    const later = await eventually(async () => {
      const s = await hook((h) => ({ clock: h.replayClock(), times: h.readingTimes() }));
      if (s.clock === null || s.clock < first.clock + 6_000) {
        return `replay clock at ${s.clock ?? 'none'} (started at ${first.clock}), bar says "${await page.locator('[data-testid=replay-state]').textContent()}" "${await page.locator('[data-testid=replay-error]').textContent()}"`;
      }
      return { clock: s.clock, times: s.times };
    }, 30_000);
    expect(later.clock).toBeLessThan(Date.now());
    for (const ts of Object.values(later.times)) expect(ts).toBeLessThanOrEqual(later.clock + 2_000);
    // The map changed with the clock: readings moved on.
    expect(Object.entries(later.times).some(([id, ts]) => ts > (first.times[id] ?? Infinity))).toBe(true);
    expect(await page.locator('[data-testid=connection]').getAttribute('data-state')).toBe('replay');
    expect(await page.locator('[data-testid=kpi-replay]').isVisible()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-replay.png') });

    await page.click('[data-testid=replay-live]');
    await page.waitForFunction(() => (window as HookWindow).__citypulse?.mode() === 'live', null, { timeout: 20_000 });
    await expect
      .poll(async () => Math.max(...Object.values(await hook((h) => h.readingTimes()))), { timeout: 20_000 })
      .toBeGreaterThan(Date.now() - 30_000);
    await expect.poll(() => page.locator('[data-testid=connection]').getAttribute('data-state')).toBe('live');
  });

  it('tells the operator\'s other screen of a replay, lets it follow and control it, and clears when it stops', async () => {
    if (!stack) throw new Error('no stack');
    // The desk screen: a second page signed in as the same operator (its own socket, same api node).
    const desk = await offlineContext(origin, outside);
    try {
      await signIn(desk.page, stack.apiUrl, stack.operator);
      await expect.poll(() => desk.page.locator('[data-testid=connection]').getAttribute('data-state'), { timeout: 20_000 }).toBe('live');
      const notice = desk.page.locator('[data-testid=other-screen]');
      const text = desk.page.locator('[data-testid=other-screen-text]');
      expect(await notice.getAttribute('data-state')).toBe('none');
      // The live region is in the page before it has anything to say, so its sentence is announced.
      expect([await text.getAttribute('role'), await text.getAttribute('aria-live')]).toEqual(['status', 'polite']);

      // The wall screen (the first page) starts a replay.
      if (!(await page.locator('[data-testid=replay-play]').isVisible())) await page.click('[data-testid=replay-toggle]');
      const vietnamTime = (ms: number) => new Date(ms + 7 * 3_600_000).toISOString().slice(0, 19);
      await page.fill('[data-testid=replay-from]', vietnamTime(startedAt - 5_000));
      await page.fill('[data-testid=replay-to]', vietnamTime(Date.now()));
      await page.selectOption('[data-testid=replay-speed]', '1');
      await page.click('[data-testid=replay-play]');
      await page.waitForFunction(() => (window as HookWindow).__citypulse?.mode() === 'replay', null, { timeout: 20_000 });

      // The desk screen, live, is told: range, speed, state, and Follow / Dismiss.
      await expect.poll(() => notice.getAttribute('data-state'), { timeout: 20_000 }).toBe('full');
      await expect.poll(() => text.textContent()).toMatch(/^Màn hình khác của bạn đang phát lại: \d{2}:\d{2}:\d{2}.*, 1×, (đang phát|đang tải dữ liệu)$/);
      expect(await desk.page.locator('[data-testid=other-screen-follow]').isVisible()).toBe(true);
      expect(await desk.page.locator('[data-testid=other-screen-dismiss]').isVisible()).toBe(true);
      expect(await desk.page.evaluate(() => (window as HookWindow).__citypulse?.mode())).toBe('live');
      await desk.page.screenshot({ path: join(ARTIFACTS, 'dashboard-other-screen.png') });

      // Follow, from the keyboard: the desk's bar controls the wall's replay; the desk's map stays live.
      await desk.page.locator('[data-testid=other-screen-follow]').focus();
      await desk.page.keyboard.press('Enter');
      await expect.poll(() => desk.page.locator('[data-testid=replay-remote]').isVisible()).toBe(true);
      expect(await notice.getAttribute('data-state')).toBe('none');
      expect(await desk.page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('replay-play');
      await desk.page.keyboard.press('Enter'); // pause, on the wall screen
      await expect.poll(() => page.locator('[data-testid=replay-state]').getAttribute('data-state'), { timeout: 20_000 }).toBe('paused');
      await expect.poll(() => desk.page.locator('[data-testid=replay-state]').getAttribute('data-state')).toBe('paused');
      expect(await desk.page.evaluate(() => (window as HookWindow).__citypulse?.mode())).toBe('live');
      await desk.page.screenshot({ path: join(ARTIFACTS, 'dashboard-other-screen-follow.png') });

      // Stop controlling: the replay goes on there, and the notice is back with its new state.
      await desk.page.click('[data-testid=replay-unfollow]');
      await expect.poll(() => notice.getAttribute('data-state')).toBe('full');
      expect(await text.textContent()).toMatch(/, 1×, tạm dừng$/);
      expect(await page.evaluate(() => (window as HookWindow).__citypulse?.mode())).toBe('replay');

      // The wall screen goes back to live: the notice on the desk goes away.
      await page.click('[data-testid=replay-live]');
      await page.waitForFunction(() => (window as HookWindow).__citypulse?.mode() === 'live', null, { timeout: 20_000 });
      await expect.poll(() => notice.getAttribute('data-state'), { timeout: 20_000 }).toBe('none');
      expect(await text.textContent()).toBe('');
      expect(await desk.page.locator('[data-testid=other-screen-follow]').isVisible()).toBe(false);
    } finally {
      await desk.context.close();
    }
  });

  it('switches to English and back', async () => {
    expect(await page.evaluate(() => document.documentElement.lang)).toBe('vi');
    expect(await page.locator('.logout').textContent()).toBe('Đăng xuất');
    await page.click('[data-testid=lang-toggle]');
    expect(await page.evaluate(() => document.documentElement.lang)).toBe('en');
    expect(await page.locator('.logout').textContent()).toBe('Sign out');
    await expect.poll(() => page.locator('[data-testid=layers]').textContent()).toContain('Layers');
    await expect.poll(() => page.locator('[data-testid=connection]').textContent()).toContain('Live');
    expect(await page.locator('footer.statusbar').getAttribute('aria-label')).toBe('Status');
    expect(await page.getByText('VN_AQI (indicative)').count()).toBeGreaterThan(0);
    expect(await page.locator('select.province-picker option[value=""]').textContent()).toBe('Whole country');
    // Texts built from readings and times follow too: alert ages, the device panel's headline.
    await expect.poll(() => page.locator('.alert-age').first().textContent()).toMatch(/ ago$/);
    expect(await page.locator('.alert-age').first().textContent()).not.toContain('trước');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-english.png') });
    await page.click('[data-testid=lang-toggle]');
    expect(await page.locator('.logout').textContent()).toBe('Đăng xuất');
  });

  it('fits a 1920×1080 wall screen and a 1366×768 laptop without scrolling', async () => {
    for (const size of [{ width: 1920, height: 1080 }, { width: 1366, height: 768 }]) {
      await page.setViewportSize(size);
      await settled();
      const overflow = await page.evaluate(() => ({ x: document.documentElement.scrollWidth - window.innerWidth, y: document.documentElement.scrollHeight - window.innerHeight }));
      expect(overflow, `${size.width}×${size.height}`).toEqual({ x: 0, y: 0 });
      // The map keeps most of the screen.
      const map = await mapCanvas().boundingBox();
      expect((map?.width ?? 0) * (map?.height ?? 0)).toBeGreaterThan(size.width * size.height * 0.45);
      await page.screenshot({ path: join(ARTIFACTS, `dashboard-${size.width}x${size.height}.png`) });
    }
    await page.setViewportSize(VIEWPORT);
    await settled();
  });

  it('offers a viewer no acknowledgement and no replay, and the api refuses one anyway', async () => {
    if (!stack) throw new Error('no stack');
    const viewer = await offlineContext(origin, outside);
    try {
      // Scoped to Đà Nẵng (48), where the alert rule fires: nothing outside the scope is offered either.
      await signIn(viewer.page, stack.apiUrl, stack.scopedViewer);
      expect(await viewer.page.locator('select.province-picker option[value="79"]').count()).toBe(0);
      const search = viewer.page.locator('[data-testid=device-search]');
      await search.fill('Ho Chi Minh');
      await expect.poll(() => viewer.page.locator('.search-empty').isVisible()).toBe(true);
      expect(await viewer.page.locator('[data-testid=search-option]').count()).toBe(0);
      await search.fill('Da Nang');
      await expect.poll(() => viewer.page.locator('[data-testid=search-option][data-kind=province]').getAttribute('data-code')).toBe('48');
      await search.fill('');
      await expect.poll(() => viewer.page.locator('[data-testid=alert-item]').count(), { timeout: 30_000 }).toBeGreaterThan(0);
      expect(await viewer.page.locator('[data-testid=alert-ack]').count()).toBe(0);
      expect(await viewer.page.locator('[data-testid=alert-replay]').count()).toBe(0);
      expect(await viewer.page.locator('[data-testid=replay-toggle]').count()).toBe(0);
      expect(await viewer.page.locator('[data-testid=other-screen]').count()).toBe(0);
      const id = await viewer.page.locator('[data-testid=alert-item]').first().getAttribute('data-alert-id');
      const status = await viewer.page.evaluate(async (alertId) => {
        const response = await fetch('/api/v1/alerts/ack', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: alertId, note: 'viewer' }) });
        return response.status;
      }, id);
      expect(status).toBe(403);
      await viewer.page.screenshot({ path: join(ARTIFACTS, 'dashboard-viewer.png') });
    } finally {
      await viewer.context.close();
    }
  });

  it('with a Mapbox token configured and the network blocked, the live layers still work', async () => {
    if (!stack) throw new Error('no stack');
    const node = await stack.startApi({ mapboxAccessToken: 'pk.e2e-dummy-token-not-real' });
    const blocked: string[] = [];
    const mapbox = await offlineContext(new URL(node.url).origin, blocked);
    try {
      await signIn(mapbox.page, node.url, stack.operator);
      expect(await mapbox.page.evaluate(() => (window as HookWindow).__citypulse?.engine)).toBe('mapbox');
      // The Mapbox base could not load: the dashboard says so and falls back to its own style.
      await mapbox.page.waitForFunction(() => (window as HookWindow).__citypulse?.layers().base === 'offline', null, { timeout: 30_000 });
      await mapbox.page.waitForFunction(() => ((window as HookWindow).__citypulse?.liveCount() ?? 0) > 0, null, { timeout: LIVE_TIMEOUT_MS });
      const colors = await eventually(async () => {
        const c = [...new Set(Object.values(await mapbox.page.evaluate(() => (window as HookWindow).__citypulse?.featureColors() ?? {})))].filter((x) => x !== '#9e9e9e');
        return c.length > 0 ? c : 'no device has a state colour yet';
      }, 20_000);
      const palette = await mapbox.page.evaluate(() => (window as HookWindow).__citypulse?.mapColors() ?? { sea: '', land: '' });
      const drawnPixels = await eventually(async () => {
        const png = await mapbox.page.locator('.map canvas').first().screenshot();
        const { total, counts } = await countColors(mapbox.page, png, [parseColor(palette.land), ...colors.map(parseColor)]);
        const land = (counts[0] ?? 0) / total;
        const points = counts.slice(1).reduce((a, b) => a + b, 0);
        return land > 0.02 && points >= 20 ? { land, points } : `land ${(land * 100).toFixed(1)} %, ${points} device pixels`;
      }, 30_000);
      expect(drawnPixels.points).toBeGreaterThanOrEqual(20);
      // Live updates keep arriving.
      const before = await mapbox.page.evaluate(() => (window as HookWindow).__citypulse?.stats().framesReceived ?? 0);
      await mapbox.page.waitForFunction((n) => ((window as HookWindow).__citypulse?.stats().framesReceived ?? 0) > n, before, { timeout: 20_000 });
      // Only Mapbox was tried, and it was blocked.
      expect(blocked.length).toBeGreaterThan(0);
      for (const url of blocked) expect(new URL(url).hostname).toMatch(/(^|\.)mapbox\.com$/);
      await mapbox.page.screenshot({ path: join(ARTIFACTS, 'dashboard-mapbox-offline.png') });
    } finally {
      await mapbox.context.close();
    }
  });

  it('made no request outside its own origin, threw no page errors and ran no device text', () => {
    expect(outside).toEqual([]);
    expect(pageErrors).toEqual([]);
    expect(dialogs).toEqual([]);
  });
});
