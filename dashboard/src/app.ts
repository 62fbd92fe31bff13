import { PROVINCE_CODES, PROVINCES, provinceByCode, type AlertView, type ProvinceSummary, type ReplayState, type SessionInfo } from '@citypulse/contracts';
import { acknowledgeAlert, getHistory, getUiConfig, isUnauthorized, listDevices, logout, me, type UiConfig } from './api.js';
import { installHook, removeHook } from './hook.js';
import { lang, messages, onLanguageChange, setLang, tx } from './i18n.js';
import { ActiveAlerts } from './live/alerts.js';
import { ALERT_LEVEL } from './live/features.js';
import { kpisFromDevices, kpisFromSummaries, type Kpis } from './live/kpis.js';
import { DeviceLayer } from './live/layer.js';
import { connectLive, type ConnectionState, type LiveConnection } from './live/socket.js';
import { DeviceStore, LIVE_WINDOW_MS } from './live/store.js';
import { ProvinceChoropleth } from './map/choropleth.js';
import { loadMapEngine, type MapEngine, type MapInstance } from './map/engine.js';
import { MapInteraction } from './map/interaction.js';
import { ProvinceLabels } from './map/labels.js';
import { LAYER, PALETTE, SOURCE, VIETNAM_BOUNDS, addOverlay, boundsOf, buildStyle, deviceFilter, provinceFilter } from './map/style.js';
import { AlertsPanel } from './ui/alerts.js';
import { h } from './ui/dom.js';
import { KpiHeader } from './ui/kpis.js';
import { DEFAULT_LAYERS, LayerControl, type BaseMap, type LayerState } from './ui/legend.js';
import { DevicePanel } from './ui/panel.js';
import { renderProvincePicker } from './ui/picker.js';
import { ReplayBar } from './ui/replay.js';
import { DeviceSearch } from './ui/search.js';
import { ConnectionIndicator, StatusBar } from './ui/status.js';

const M = messages({
  subtitle: { vi: 'Trung tâm điều hành', en: 'Operations centre' },
  area: { vi: 'Địa bàn', en: 'Area' },
  signOut: { vi: 'Đăng xuất', en: 'Sign out' },
  switchLanguage: { vi: 'English', en: 'Tiếng Việt' },
  switchLanguageLabel: { vi: 'Switch to English', en: 'Chuyển sang tiếng Việt' },
  expired: { vi: 'Phiên đăng nhập đã hết hạn, vui lòng đăng nhập lại', en: 'Your session expired: please sign in again' },
  error: (text: string) => ({ vi: `Lỗi: ${text}`, en: `Error: ${text}` }),
  mapError: (text: string) => ({ vi: `Bản đồ: ${text}`, en: `Map: ${text}` }),
  unknownError: { vi: 'lỗi không rõ', en: 'unknown error' },
  baseFailed: { vi: 'Không tải được nền Mapbox (mạng?) — dùng nền ngoại tuyến', en: 'The Mapbox base map did not load (network?) — using the offline map' },
  roles: (role: string) => ({ vi: { viewer: 'xem', operator: 'điều hành', admin: 'quản trị' }[role] ?? role, en: role }),
  attribution: { vi: 'Ranh giới hành chính 34 tỉnh/thành: vn-admin (MIT)', en: 'Boundaries of the 34 provinces: vn-admin (MIT)' },
  skip: { vi: 'Bỏ qua đến bản đồ', en: 'Skip to the map' },
});

/** Readings for devices the list did not have trigger a list refresh, at most this often. */
const DEVICE_REFRESH_MIN_INTERVAL_MS = 10_000;
/** How often the status bar, KPIs and choropleth re-evaluate without new data. */
const STATUS_TICK_MS = 1_000;
/** A Mapbox base style that has not loaded after this long is given up for the offline one. */
const BASE_STYLE_TIMEOUT_MS = 10_000;
/** Zoom a device is shown at when picked in the search or the alert list. */
const DEVICE_ZOOM = 14;
/** The UI config is retried after 1 s, 2 s, 4 s… up to every 30 s. */
const CONFIG_RETRY_FIRST_MS = 1_000;
const CONFIG_RETRY_MAX_MS = 30_000;

const MAPBOX_STYLES: Readonly<Record<Exclude<BaseMap, 'offline'>, string>> = {
  'mapbox-dark': 'mapbox://styles/mapbox/dark-v10',
  'mapbox-streets': 'mapbox://styles/mapbox/streets-v11',
};

export interface AppHandle {
  destroy(): void;
}

/**
 * The main screen: KPI header, search, map with its live layers, layer control and legend,
 * alerts, device panel, replay timeline and status bar, wired to the api's REST routes and its
 * socket.io stream. `signOut` is called when the operator logs out or the session expired.
 */
export async function startApp(root: HTMLElement, session: SessionInfo, signOut: (notice?: string) => void): Promise<AppHandle> {
  const provinces = session.provinces ?? PROVINCE_CODES;
  const canOperate = session.role === 'operator' || session.role === 'admin';
  const store = new DeviceStore();
  const book = new ActiveAlerts();
  const summaries = new Map<string, ProvinceSummary>();
  const statusBar = new StatusBar();
  const indicator = new ConnectionIndicator();
  const kpiHeader = new KpiHeader();
  const mapEl = h('div', { className: 'map', attrs: { 'data-testid': 'map', id: 'map' } });
  const logoutButton = tx(h('button', { className: 'logout', attrs: { type: 'button' } }), M.signOut);
  const langButton = tx(tx(h('button', { className: 'lang-toggle', attrs: { type: 'button', 'data-testid': 'lang-toggle' } }), M.switchLanguage), M.switchLanguageLabel, 'aria-label');
  let destroyed = false;
  let connection: ConnectionState = { kind: 'connecting' };
  /** The status bar's error line, as a message so that it follows a language change. */
  let message: (() => string) | null = null;
  let live: LiveConnection | null = null;
  let map: MapInstance | null = null;
  let choropleth: ProvinceChoropleth | null = null;
  let engine: MapEngine | null = null;
  let labels: ProvinceLabels | null = null;
  let layer: DeviceLayer | null = null;
  let interaction: MapInteraction | null = null;
  let province: string | null = null;
  let mode: 'live' | 'replay' = 'live';
  let replayClock: number | null = null;
  /** A replay was asked for: its frames may arrive before the state that says it started. */
  let replayRequested = false;
  let layers: LayerState = DEFAULT_LAYERS;
  /** The latest base-map request (a late answer to an older one is ignored) and its timeout. */
  let baseRequest = 0;
  let baseTimer: ReturnType<typeof setTimeout> | undefined;
  let alertsVersion = -1;
  let refreshTimer: ReturnType<typeof setTimeout> | undefined;
  let lastDeviceFetch = 0;
  const timers: ReturnType<typeof setInterval>[] = [];
  const unsubscribe: (() => void)[] = [];

  const sessionExpired = (): void => {
    destroy();
    signOut(M.expired());
  };

  const panel = new DevicePanel({
    store,
    fetchHistory: (id, params, signal) => getHistory(id, params, signal),
    onClose: () => selectDevice(null),
    onUnauthorized: sessionExpired,
  });
  const alertsPanel = new AlertsPanel({
    book,
    canAcknowledge: canOperate,
    canReplay: canOperate,
    deviceName: (id) => store.get(id)?.name,
    acknowledge: async (id, note) => {
      book.applyAck(await acknowledgeAlert(id, note));
      renderAlerts();
    },
    onSelect: (alert) => flyToDevice(alert.deviceId),
    onReplayAt: (alert) => {
      flyToDevice(alert.deviceId);
      replayBar?.jumpTo(alert.raisedAt);
    },
    onUnauthorized: sessionExpired,
  });
  const search = new DeviceSearch({
    entries: () => store.all(),
    provinces,
    onPickDevice: (id) => flyToDevice(id),
    onPickProvince: (code) => {
      picker.value = code;
      flyToProvince(code);
    },
  });
  // What a role may not do is not offered: viewers get no replay at all.
  const replayBar = canOperate
    ? new ReplayBar({
        provinces,
        start: async (request) => {
          replayRequested = true;
          const reply = await (live?.replayStart(request) ?? Promise.resolve({ ok: false, error: { code: 'E_UNAVAILABLE', message: 'not connected' } } as const));
          if (!reply.ok) replayRequested = mode === 'replay';
          return reply;
        },
        control: (request) => live?.replayControl(request) ?? Promise.resolve({ ok: false, error: { code: 'E_UNAVAILABLE', message: 'not connected' } }),
        onMode: (next, state) => setMode(next, state),
      })
    : null;
  const layerControl = new LayerControl(layers, { mapbox: false, onChange: (next) => applyLayers(next) });
  const picker = renderProvincePicker(provinces, (code) => flyToProvince(code));

  const areaLabel = tx(h('span'), M.area);
  root.replaceChildren(
    h('div', { className: 'app' }, [
      tx(h('a', { className: 'skip-link', attrs: { href: '#map' } }), M.skip),
      h('header', { className: 'topbar' }, [
        h('div', { className: 'brand' }, [h('strong', { text: 'CityPulse' }), ' · ', tx(h('span'), M.subtitle)]),
        kpiHeader.el,
        h('span', { className: 'spacer' }),
        search.el,
        h('label', { className: 'picker-label' }, [areaLabel, picker]),
        indicator.el,
        langButton,
        tx(h('span', { className: 'user' }), () => `${session.username} (${M.roles(session.role)})`),
        logoutButton,
      ]),
      h('div', { className: 'workspace' }, [
        h('div', { className: 'map-wrap' }, [mapEl, layerControl.el, replayBar?.el ?? null]),
        h('div', { className: 'side' }, [panel.el, alertsPanel.el]),
      ]),
      statusBar.el,
    ]),
  );

  /* ---- rendering that follows the data ---- */

  const kpisOf = (code: string | null): Kpis => {
    const scope = code === null ? provinces : [code];
    if (mode === 'replay' && replayClock !== null) {
      // Alerts are not replayed: the counts are today's active alerts.
      return kpisFromDevices(store.all(), { ...(code === null ? {} : { province: code }), clock: replayClock, liveWindowMs: LIVE_WINDOW_MS, alerts: book.counts(code ?? undefined), mode: 'replay' });
    }
    return kpisFromSummaries(summaries.values(), scope);
  };

  const renderStatus = (): void => {
    if (destroyed) return;
    const now = Date.now();
    const inputs = {
      connection,
      mode,
      liveDevices: store.liveCount(now),
      totalDevices: store.size,
      lastFrameAt: store.lastFrameAt(),
      lastSignAt: store.lastSignAt(),
      now,
      message: message?.() ?? null,
      lastBatchMs: layer?.stats.lastFlushMs ?? 0,
    };
    statusBar.render(inputs);
    indicator.render(inputs);
  };

  const renderKpis = (): void => {
    if (destroyed) return;
    kpiHeader.render(kpisOf(province), { province }, mode);
  };

  const renderChoropleth = (): void => {
    if (!destroyed) choropleth?.apply(layers.choropleth, (code) => kpisOf(code));
  };

  const renderAlerts = (): void => {
    if (book.version === alertsVersion) return;
    alertsVersion = book.version;
    alertsPanel.render();
    const levels = new Map<string, number>();
    for (const [id, severity] of book.worstByDevice()) levels.set(id, ALERT_LEVEL[severity]);
    store.setAlertLevels(levels);
    layer?.schedule();
  };

  renderStatus();
  renderKpis();

  function destroy(): void {
    if (destroyed) return;
    destroyed = true;
    for (const timer of timers) clearInterval(timer);
    clearTimeout(baseTimer);
    layerControl.destroy();
    for (const off of unsubscribe) off();
    clearTimeout(refreshTimer);
    alertsPanel.destroy();
    search.destroy();
    kpiHeader.destroy();
    panel.dispose();
    replayBar?.dispose();
    document.removeEventListener('keydown', onKey);
    live?.close();
    panel.close();
    interaction?.remove();
    labels?.remove();
    layer?.remove();
    map?.remove();
    removeHook();
  }

  function onKey(event: KeyboardEvent): void {
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement;
    if (event.key === 'Escape' && !typing) selectDevice(null);
    // '/' jumps to the device search, as in most operations consoles and code hosts.
    if (event.key === '/' && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      search.focus();
    }
  }
  document.addEventListener('keydown', onKey);

  langButton.addEventListener('click', () => setLang(lang() === 'vi' ? 'en' : 'vi'));
  unsubscribe.push(
    onLanguageChange(() => {
      renderStatus();
      renderKpis();
      alertsPanel.render();
      interaction?.refresh();
    }),
  );

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
    if (map?.getLayer(LAYER.deviceSelected)) map.setFilter(LAYER.deviceSelected, deviceFilter(id));
  }

  function flyToDevice(id: string): void {
    const at = store.drawnAt(id);
    selectDevice(id);
    if (!map || !at) return;
    map.flyTo({ center: [at[0], at[1]], zoom: Math.max(map.getZoom(), DEVICE_ZOOM), duration: 1200 });
  }

  function flyToProvince(code: string | null): void {
    province = code;
    alertsPanel.setProvince(code);
    renderKpis();
    if (!map) return;
    const picked = code === null ? undefined : provinceByCode(code);
    map.fitBounds(boundsOf(picked?.bbox ?? VIETNAM_BOUNDS), { padding: 40, maxZoom: 11, duration: 1500 });
    if (map.getLayer(LAYER.provinceSelected)) map.setFilter(LAYER.provinceSelected, provinceFilter(picked?.code ?? null));
    labels?.select(picked?.code ?? null);
  }

  /** Replay started (the map shows only what the replay brings) or stopped (live snapshots follow). */
  function setMode(next: 'live' | 'replay', state: ReplayState | null): void {
    const leaving = next === 'live' && mode === 'replay';
    if (next === 'replay' && mode === 'live') store.clearReadings();
    if (next === 'live') replayRequested = false;
    mode = next;
    if (leaving) {
      // Back to live: nothing replayed may stay on the map. The live snapshots and the device
      // list's latest readings fill it again.
      store.clearReadings();
      fetchDevices().catch(failed);
    }
    replayClock = next === 'replay' ? (state?.clock ?? null) : null;
    panel.setClock(replayClock);
    document.body.classList.toggle('is-replay', next === 'replay');
    layer?.schedule();
    renderStatus();
    renderKpis();
    renderChoropleth();
  }

  function applyLayers(next: LayerState): void {
    const previous = layers;
    layers = next;
    if (next.scale !== previous.scale || next.domains !== previous.domains) {
      store.setDisplayOptions({ scale: next.scale, domains: next.domains });
      layer?.schedule();
    }
    if (map?.getLayer(LAYER.heatmap)) map.setLayoutProperty(LAYER.heatmap, 'visibility', next.heatmap ? 'visible' : 'none');
    layer?.setHeatVisible(next.heatmap);
    if (next.choropleth !== previous.choropleth) renderChoropleth();
    if (next.base !== previous.base) setBase(next.base);
  }

  /** After a style (re)load: our layers are new, so everything they show is applied again. */
  function restoreOverlay(): void {
    if (!map) return;
    if (map.getLayer(LAYER.heatmap)) map.setLayoutProperty(LAYER.heatmap, 'visibility', layers.heatmap ? 'visible' : 'none');
    map.setFilter(LAYER.deviceSelected, deviceFilter(panel.selected));
    map.setFilter(LAYER.provinceSelected, provinceFilter(province));
    choropleth?.invalidate();
    renderChoropleth();
    layer?.invalidate();
  }

  /**
   * The base map (Mapbox token configured only). One `style.load` handler (registered once the map
   * exists) puts our layers back over whichever style loaded. A Mapbox style that cannot load (no
   * network, bad token) within BASE_STYLE_TIMEOUT_MS falls back to the offline style, so the live
   * layers keep working either way; a Mapbox style arriving after that is replaced again.
   */
  function setBase(base: BaseMap): void {
    const m = map;
    if (!m) return;
    const request = ++baseRequest;
    clearTimeout(baseTimer);
    if (base === 'offline') {
      // Not a diff: mapbox-gl 1.x would patch the style in place without a `style.load`.
      m.setStyle(buildStyle(), { diff: false });
      return;
    }
    baseTimer = setTimeout(() => baseFailed(request), BASE_STYLE_TIMEOUT_MS);
    m.setStyle(MAPBOX_STYLES[base], { diff: false });
  }

  /** A Mapbox base did not load: back to the offline style, and say so. */
  function baseFailed(request: number): void {
    if (request !== baseRequest || destroyed || layers.base === 'offline') return;
    message = M.baseFailed;
    renderStatus();
    layers = { ...layers, base: 'offline' };
    layerControl.setBase('offline');
    setBase('offline');
  }

  /** Any style finished loading: our sources and layers over it, and what they show re-applied. */
  function onStyleLoad(): void {
    const m = map;
    if (!m) return;
    const ours = m.getLayer(LAYER.sea) !== undefined;
    if (layers.base === 'offline' && !ours) {
      // A Mapbox style that arrived after we gave up on it.
      setBase('offline');
      return;
    }
    if (layers.base !== 'offline') clearTimeout(baseTimer);
    if (!m.getSource(SOURCE.devices)) addOverlay(m);
    restoreOverlay();
  }

  const failed = (error: unknown): void => {
    if (destroyed) return;
    if (isUnauthorized(error)) {
      sessionExpired();
      return;
    }
    const text = error instanceof Error ? error.message : String(error);
    message = () => M.error(text);
    renderStatus();
  };

  /** The map waits for the api's UI config; a failure is shown and retried with backoff until it loads. */
  async function loadUiConfig(): Promise<UiConfig | null> {
    for (let attempt = 0; !destroyed; attempt++) {
      try {
        const loaded = await getUiConfig();
        message = null;
        renderStatus();
        return loaded;
      } catch (error) {
        failed(error);
        if (isUnauthorized(error)) return null;
        // Not cleared on destroy: the loop sees `destroyed` when it wakes and ends.
        await new Promise<void>((resolve) => setTimeout(resolve, Math.min(CONFIG_RETRY_MAX_MS, CONFIG_RETRY_FIRST_MS * 2 ** attempt)));
      }
    }
    return null;
  }

  function fetchDevices(): Promise<void> {
    lastDeviceFetch = Date.now();
    return listDevices().then((views) => {
      if (destroyed) return;
      // During a replay the list's live readings must not mix into the replayed state.
      store.replaceDevices(views, Date.now(), mode === 'live');
      alertsPanel.invalidate();
      alertsPanel.render();
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
  const config = await loadUiConfig();
  if (config === null || destroyed) return { destroy };
  engine = await loadMapEngine(config.mapboxAccessToken);
  if (destroyed) return { destroy };
  if (engine.name === 'mapbox') layerControl.enableBaseMaps();

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
  choropleth = new ProvinceChoropleth(m);
  m.addControl(new engine.NavigationControl({ showCompass: false }), 'top-right');
  // The attribution's text is fixed at construction: a language change swaps the control.
  const mapEngine = engine;
  let attribution = new mapEngine.AttributionControl({ compact: true, customAttribution: M.attribution() });
  m.addControl(attribution, 'bottom-right');
  unsubscribe.push(
    onLanguageChange(() => {
      m.removeControl(attribution);
      attribution = new mapEngine.AttributionControl({ compact: true, customAttribution: M.attribution() });
      m.addControl(attribution, 'bottom-right');
    }),
  );
  m.on('error', (event: { error?: unknown }) => {
    // While a Mapbox base is loading, an error is most likely its style failing to load.
    if (layers.base !== 'offline' && !m.getLayer(LAYER.sea) && !m.getSource(SOURCE.devices)) {
      baseFailed(baseRequest);
      return;
    }
    const text = event.error instanceof Error ? event.error.message : M.unknownError();
    message = () => M.mapError(text);
    renderStatus();
  });
  m.on('style.load', onStyleLoad);
  await Promise.all([new Promise<void>((resolve) => m.once('load', () => resolve())), devicesLoaded]);
  if (destroyed) return { destroy };

  const deviceLayer = new DeviceLayer(m, store);
  layer = deviceLayer;
  labels = new ProvinceLabels(m, engine, PROVINCES);
  interaction = new MapInteraction({ map: m, engine, store, onSelectDevice: (id) => selectDevice(id) });
  deviceLayer.onFlush((changes) => {
    panel.update(changes.changed, changes.membership);
    interaction?.refresh();
    renderStatus();
  });
  deviceLayer.schedule();
  // With a token, the Mapbox base is tried first; the offline style stays the fallback.
  if (engine.name === 'mapbox') {
    layers = { ...layers, base: 'mapbox-dark' };
    layerControl.setBase('mapbox-dark');
    setBase('mapbox-dark');
  }

  // Subscribe to every province the operator may see rather than the one picked: the picker is a
  // camera move, not a filter, and a national view needs every province anyway. The api coalesces
  // each province's domain to one frame per interval and the layer applies at most one batch per
  // FLUSH_MIN_INTERVAL_MS, so the cost is bounded by the number of devices, not the message rate.
  live = connectLive(provinces, {
    frame: (frame, kind) => {
      // The replay's first snapshot can come before its first state: it starts the replay mode.
      if (frame.mode === 'replay' && mode === 'live' && replayRequested) setMode('replay', null);
      // A live frame that overtook the start of a replay (or a replay frame its end) is dropped.
      if (frame.mode !== mode) return;
      // Replayed history may name devices deleted since: only live data asks for the list again.
      if (store.applyFrame(frame, Date.now(), kind) > 0 && mode === 'live') scheduleDeviceRefresh();
      if (frame.mode === 'replay' && frame.clock !== undefined) replayClock = frame.clock;
      deviceLayer.schedule();
      deviceLayer.noteFrame(frame.readings.length);
    },
    status: (event) => {
      // Statuses are live: a replayed point does not fade with today's outage.
      if (mode === 'replay') return;
      if (!store.applyStatus(event)) scheduleDeviceRefresh();
      deviceLayer.schedule();
    },
    heartbeat: (serverTime) => store.noteHeartbeat(serverTime, Date.now()),
    state: (state) => {
      const reconnected = state.kind === 'connected' && connection.kind !== 'connected' && connection.kind !== 'connecting';
      connection = state;
      renderStatus();
      // A refused connection may be an expired session: ask the api, which answers 401 then.
      if (state.kind === 'refused') me().catch(failed);
      // What the other screens' replays were may have changed unheard: forgotten until told again.
      if (state.kind === 'reconnecting' || state.kind === 'refused') replayBar?.forgetOtherScreens();
      // After an outage the device list may have changed too (snapshots bring the readings).
      if (reconnected) fetchDevices().catch(failed);
    },
    summary: (summary) => {
      summaries.set(summary.province, summary);
    },
    alerts: (snapshot) => {
      book.applySnapshot(snapshot);
      renderAlerts();
    },
    alert: (alert: AlertView) => {
      book.apply(alert);
      renderAlerts();
      // An alert of a device registered after our list was fetched: fetch it to name the device.
      if (!store.get(alert.deviceId)) scheduleDeviceRefresh();
    },
    alertAck: (ack) => {
      book.applyAck(ack);
      renderAlerts();
    },
    replayState: (state) => {
      replayBar?.applyState(state);
      if (state.state !== 'stopped') replayClock = state.clock;
      panel.setClock(mode === 'replay' ? replayClock : null);
    },
    // The same operator's other screens: a notice, or the replay this bar follows. Viewers have no bar.
    operatorReplayState: (state) => replayBar?.applyOtherState(state),
  });

  timers.push(
    setInterval(() => {
      renderStatus();
      renderKpis();
      renderChoropleth();
      panel.tick();
      replayBar?.expireOtherScreens(Date.now());
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
      const at = store.drawnAt(id);
      if (!at) return null;
      const p = m.project([at[0], at[1]]);
      return { x: p.x, y: p.y };
    },
    mapColors: () => ({ sea: PALETTE.sea, land: PALETTE.land }),
    selectedDevice: () => panel.selected,
    stats: () => ({ ...deviceLayer.stats }),
    mode: () => mode,
    replayClock: () => replayClock,
    layers: () => ({ domains: [...layers.domains], heatmap: layers.heatmap, scale: layers.scale, choropleth: layers.choropleth, base: layers.base }),
    activeAlerts: () => book.list().map((a) => a.id),
  });

  return { destroy };
}
