import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provinceByCode } from '@citypulse/contracts';
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

/** The dashboard's read-only test hook (dashboard/src/hook.ts), as far as this test uses it. */
interface Hook {
  readonly map: {
    loaded(): boolean;
    isMoving(): boolean;
    areTilesLoaded(): boolean;
    getCenter(): { lng: number; lat: number };
  };
  liveCount(): number;
  lastFrameAt(): number | null;
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
  let context: BrowserContext;
  let page: Page;
  let origin: string;
  const outside: string[] = [];
  const pageErrors: string[] = [];

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
    stack = await startStack({ simulate: { provinces: ['01', '79', '48'], devicesPerProvince: 2, intervalMs: 1000 } });
    origin = new URL(stack.apiUrl).origin;
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: VIEWPORT, serviceWorkers: 'block' });
    // Context-wide, so requests from the map's web worker are covered as well as the page's.
    await context.route('**/*', async (route) => {
      const url = route.request().url();
      if (new URL(url).origin === origin) return route.continue();
      outside.push(url);
      return route.abort('blockedbyclient');
    });
    page = await context.newPage();
    page.on('websocket', (ws) => {
      if (new URL(ws.url()).host !== new URL(origin).host) outside.push(ws.url());
    });
    page.on('pageerror', (error) => pageErrors.push(error.message));
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

  it('made no request outside its own origin and threw no page errors', () => {
    expect(outside).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
