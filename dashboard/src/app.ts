import { PROVINCE_CODES, PROVINCES, provinceByCode, type SessionInfo } from '@citypulse/contracts';
import { getHistory, getUiConfig, isUnauthorized, listDevices, logout, me } from './api.js';
import { installHook, removeHook } from './hook.js';
import { DeviceLayer } from './live/layer.js';
import { connectLive, type ConnectionState, type LiveConnection } from './live/socket.js';
import { DeviceStore } from './live/store.js';
import { loadMapEngine, type MapInstance } from './map/engine.js';
import { ProvinceLabels } from './map/labels.js';
import { LAYER, PALETTE, VIETNAM_BOUNDS, boundsOf, buildStyle, deviceFilter, provinceFilter } from './map/style.js';
import { bilingual, h } from './ui/dom.js';
import { renderLegend } from './ui/legend.js';
import { DevicePanel } from './ui/panel.js';
import { renderProvincePicker } from './ui/picker.js';
import { StatusBar } from './ui/status.js';

/** Readings for devices the list did not have trigger a list refresh, at most this often. */
const DEVICE_REFRESH_MIN_INTERVAL_MS = 10_000;
/** How often the status bar re-evaluates staleness and live counts without new data. */
const STATUS_TICK_MS = 1_000;
/** Click tolerance around a device point, px. */
const CLICK_TOLERANCE_PX = 8;

export interface AppHandle {
  destroy(): void;
}

/**
 * The main screen: map, live device layer, legend, province picker, device panel, status bar.
 * `signOut` is called when the operator logs out or the session turns out to have expired.
 */
export async function startApp(root: HTMLElement, session: SessionInfo, signOut: (notice?: string) => void): Promise<AppHandle> {
  const store = new DeviceStore();
  const statusBar = new StatusBar();
  const mapEl = h('div', { className: 'map', attrs: { 'data-testid': 'map' } });
  const logoutButton = h('button', { className: 'logout', attrs: { type: 'button' } }, [bilingual('Đăng xuất', 'Sign out')]);
  let destroyed = false;
  let connection: ConnectionState = { kind: 'connecting' };
  let message: string | null = null;
  let live: LiveConnection | null = null;
  let map: MapInstance | null = null;
  let labels: ProvinceLabels | null = null;
  let layer: DeviceLayer | null = null;
  let refreshTimer: ReturnType<typeof setTimeout> | undefined;
  let lastDeviceFetch = 0;
  const timers: ReturnType<typeof setInterval>[] = [];

  const sessionExpired = (): void => {
    destroy();
    signOut('Phiên đăng nhập đã hết hạn, vui lòng đăng nhập lại / Session expired');
  };

  const panel = new DevicePanel({
    store,
    fetchHistory: (id, params, signal) => getHistory(id, params, signal),
    onClose: () => selectDevice(null),
    onUnauthorized: sessionExpired,
  });
  const picker = renderProvincePicker((code) => flyToProvince(code));

  root.replaceChildren(
    h('div', { className: 'app' }, [
      h('header', { className: 'topbar' }, [
        h('div', { className: 'brand' }, [h('strong', { text: 'CityPulse' }), h('span', { text: ' · Trung tâm điều hành' })]),
        h('label', { className: 'picker-label' }, [bilingual('Địa bàn', 'Area'), picker]),
        h('span', { className: 'spacer' }),
        h('span', { className: 'user', text: `${session.username} (${session.role})` }),
        logoutButton,
      ]),
      h('div', { className: 'workspace' }, [h('div', { className: 'map-wrap' }, [mapEl, renderLegend()]), panel.el]),
      statusBar.el,
    ]),
  );

  const renderStatus = (): void => {
    if (destroyed) return;
    statusBar.render({
      connection,
      liveDevices: store.liveCount(Date.now()),
      totalDevices: store.size,
      lastFrameAt: store.lastFrameAt(),
      lastSignAt: store.lastSignAt(),
      now: Date.now(),
      message,
    });
  };
  renderStatus();

  function destroy(): void {
    if (destroyed) return;
    destroyed = true;
    for (const timer of timers) clearInterval(timer);
    clearTimeout(refreshTimer);
    document.removeEventListener('keydown', onKey);
    live?.close();
    panel.close();
    labels?.remove();
    layer?.remove();
    map?.remove();
    removeHook();
  }

  function onKey(event: KeyboardEvent): void {
    if (event.key === 'Escape') selectDevice(null);
  }
  document.addEventListener('keydown', onKey);

  logoutButton.addEventListener('click', () => {
    logoutButton.disabled = true;
    logout()
      .catch(() => undefined) // signed out locally either way
      .finally(() => {
        destroy();
        signOut();
      });
  });

  function selectDevice(id: string | null): void {
    if (id === null) panel.close();
    else panel.open(id);
    map?.setFilter(LAYER.deviceSelected, deviceFilter(id));
  }

  function flyToProvince(code: string | null): void {
    if (!map) return;
    const province = code === null ? undefined : provinceByCode(code);
    const bbox = province?.bbox ?? VIETNAM_BOUNDS;
    map.fitBounds(boundsOf(bbox), { padding: 40, maxZoom: 11, duration: 1500 });
    map.setFilter(LAYER.provinceSelected, provinceFilter(province?.code ?? null));
    labels?.select(province?.code ?? null);
  }

  const failed = (error: unknown): void => {
    if (destroyed) return;
    if (isUnauthorized(error)) {
      sessionExpired();
      return;
    }
    message = `Lỗi: ${error instanceof Error ? error.message : String(error)}`;
    renderStatus();
  };

  function fetchDevices(): Promise<void> {
    lastDeviceFetch = Date.now();
    return listDevices().then((views) => {
      if (destroyed) return;
      store.replaceDevices(views);
      message = null;
      layer?.schedule();
      renderStatus();
    });
  }

  /** Devices we cannot place yet (registered after our list, or the list failed): refetch, rate-limited. */
  function scheduleDeviceRefresh(): void {
    if (refreshTimer !== undefined || destroyed) return;
    refreshTimer = setTimeout(
      () => {
        refreshTimer = undefined;
        fetchDevices().catch((error: unknown) => {
          failed(error);
          scheduleDeviceRefresh();
        });
      },
      Math.max(0, lastDeviceFetch + DEVICE_REFRESH_MIN_INTERVAL_MS - Date.now()),
    );
  }

  // The map library and the device list load in parallel.
  const devicesLoaded = fetchDevices().catch((error: unknown) => {
    failed(error);
    scheduleDeviceRefresh();
  });
  const config = await getUiConfig().catch((error: unknown) => {
    failed(error);
    return null;
  });
  if (config === null || destroyed) return { destroy };
  const engine = await loadMapEngine(config.mapboxAccessToken);
  if (destroyed) return { destroy };

  const m = new engine.Map({
    container: mapEl,
    style: buildStyle(),
    bounds: boundsOf(VIETNAM_BOUNDS),
    fitBoundsOptions: { padding: 24 },
    attributionControl: false,
    renderWorldCopies: false,
    dragRotate: false,
    pitchWithRotate: false,
    touchPitch: false,
    minZoom: 3,
    maxZoom: 17,
  });
  map = m;
  m.addControl(new engine.NavigationControl({ showCompass: false }), 'top-right');
  m.addControl(new engine.AttributionControl({ compact: true, customAttribution: 'Ranh giới hành chính 34 tỉnh/thành: vn-admin (MIT)' }), 'bottom-right');
  m.on('error', (event: { error?: unknown }) => {
    message = `Bản đồ: ${event.error instanceof Error ? event.error.message : 'lỗi không rõ'}`;
    renderStatus();
  });
  await Promise.all([new Promise<void>((resolve) => m.once('load', () => resolve())), devicesLoaded]);
  if (destroyed) return { destroy };

  const deviceLayer = new DeviceLayer(m, store);
  layer = deviceLayer;
  labels = new ProvinceLabels(m, engine, PROVINCES);
  deviceLayer.onFlush((changes) => {
    panel.update(changes.changed, changes.membership);
    renderStatus();
  });
  deviceLayer.schedule();

  m.on('click', (event) => {
    const { x, y } = event.point;
    const hits = m.queryRenderedFeatures(
      [
        [x - CLICK_TOLERANCE_PX, y - CLICK_TOLERANCE_PX],
        [x + CLICK_TOLERANCE_PX, y + CLICK_TOLERANCE_PX],
      ],
      { layers: [LAYER.devices] },
    );
    let best: { id: string; d: number } | null = null;
    for (const feature of hits) {
      const id = feature.properties.deviceId as unknown;
      const entry = typeof id === 'string' ? store.get(id) : undefined;
      if (!entry) continue;
      const p = m.project([entry.location[0], entry.location[1]]);
      const d = Math.hypot(p.x - x, p.y - y);
      if (!best || d < best.d) best = { id: entry.id, d };
    }
    if (best) selectDevice(best.id);
  });
  m.on('mouseenter', LAYER.devices, () => {
    m.getCanvas().style.cursor = 'pointer';
  });
  m.on('mouseleave', LAYER.devices, () => {
    m.getCanvas().style.cursor = '';
  });

  // Subscribe to every province the operator may see rather than the one picked: the picker is a
  // camera move, not a filter, and a national view needs every province anyway. The api coalesces
  // each province's domain to one frame per interval and the layer applies at most one batch per
  // animation frame, so the cost is bounded by the number of devices, not by the message rate.
  // (Asking for a province outside the operator's scope would be refused as a whole.)
  live = connectLive(session.provinces ?? PROVINCE_CODES, {
    frame: (frame) => {
      if (store.applyFrame(frame, Date.now()) > 0) scheduleDeviceRefresh();
      deviceLayer.schedule();
    },
    status: (event) => {
      if (!store.applyStatus(event)) scheduleDeviceRefresh();
      deviceLayer.schedule();
    },
    heartbeat: (serverTime) => store.noteHeartbeat(serverTime, Date.now()),
    state: (state) => {
      connection = state;
      renderStatus();
      // A refused connection may be an expired session: ask the api, which answers 401 then.
      if (state.kind === 'refused') me().catch(failed);
    },
  });

  timers.push(
    setInterval(() => {
      renderStatus();
      panel.tick();
    }, STATUS_TICK_MS),
  );

  installHook({
    map: m,
    engine: engine.name,
    liveCount: () => store.liveCount(Date.now()),
    lastFrameAt: () => store.lastFrameAt(),
    featureColors: () => store.colors(),
    readingTimes: () => {
      const out: Record<string, number> = {};
      for (const entry of store.all()) if (entry.reading) out[entry.id] = entry.reading.ts;
      return out;
    },
    devicePoint: (id) => {
      const entry = store.get(id);
      if (!entry) return null;
      const p = m.project([entry.location[0], entry.location[1]]);
      return { x: p.x, y: p.y };
    },
    mapColors: () => ({ sea: PALETTE.sea, land: PALETTE.land }),
    selectedDevice: () => panel.selected,
  });

  return { destroy };
}
