import { type HistoryResponse } from '@citypulse/contracts';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { TIME_ZONE, fieldLabel, fieldUnit, formatAxisValue, formatShortTime } from '../format.js';
import { lang, pick } from '../i18n.js';
import { h } from './dom.js';

const SERIES_COLORS = ['#4fc3f7', '#ffb74d', '#aed581', '#f06292'] as const;
const CHART_HEIGHT_PX = 120;
/** The replay clock's line: the accent colour, as the selected province's outline. */
const MARKER_COLOR = '#ffd166';
const DAY_MS = 86_400_000;

/**
 * A device's history as small multiples: one uPlot per field (each with its own unit and axis),
 * cursors synced, and optionally a vertical marker (the replay clock). Built once per set of
 * fields; refreshes only call setData.
 */
export class HistoryCharts {
  readonly el = h('div', { className: 'history-charts' });
  private charts: { field: string; plot: uPlot; caption: HTMLElement }[] = [];
  private fieldsKey = '';
  /** The requested window in uPlot's seconds: the x axis always spans it, however sparse the data. */
  private rangeS: [number, number] = [0, 1];
  /** The marker's time in uPlot's seconds, or null for none. */
  private markerS: number | null = null;
  private readonly syncKey = `history-${Math.random().toString(36).slice(2)}`;

  render(history: HistoryResponse, width: number): void {
    const key = history.fields.join(',');
    this.rangeS = [history.from / 1000, history.to / 1000];
    if (key !== this.fieldsKey) this.build(history.fields, width);
    const xs = history.points.map((p) => p.t / 1000);
    for (const { field, plot } of this.charts) {
      const percent = fieldUnit(field) === '%';
      const ys = history.points.map((p) => {
        const v = p.values[field];
        return v === null || v === undefined ? null : percent ? v * 100 : v;
      });
      plot.setData([xs, ys]);
    }
  }

  /** Draws a vertical line at `ms` (the replay clock) on every chart; null removes it. */
  setMarker(ms: number | null): void {
    const next = ms === null ? null : ms / 1000;
    if (next === this.markerS) return;
    this.markerS = next;
    // Only the overlay changed: redraw without rebuilding paths or axes.
    for (const { plot } of this.charts) plot.redraw(false, false);
  }

  /** Re-labels the captions after a language change. */
  relabel(): void {
    for (const { field, caption } of this.charts) caption.textContent = captionText(field);
  }

  resize(width: number): void {
    for (const { plot } of this.charts) plot.setSize({ width, height: CHART_HEIGHT_PX });
  }

  clear(): void {
    for (const { plot } of this.charts) plot.destroy();
    this.charts = [];
    this.fieldsKey = '';
    this.el.replaceChildren();
  }

  private build(fields: readonly string[], width: number): void {
    this.clear();
    this.fieldsKey = fields.join(',');
    fields.forEach((field, i) => {
      const label = fieldLabel(field);
      const color = SERIES_COLORS[i % SERIES_COLORS.length] ?? '#4fc3f7';
      const caption = h('figcaption', { text: captionText(field) });
      const box = h('figure', { className: 'history-chart' }, [caption]);
      this.el.append(box);
      const plot = new uPlot(
        {
          width,
          height: CHART_HEIGHT_PX,
          legend: { show: false },
          cursor: { sync: { key: this.syncKey }, drag: { x: false, y: false } },
          // Ticks on Vietnamese hours and midnights, whatever the browser's zone.
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), TIME_ZONE),
          scales: { x: { time: true, range: () => this.rangeS } },
          series: [{}, { label: label.vi, stroke: color, width: 1.5, fill: `${color}22`, spanGaps: false }],
          hooks: { draw: [(u) => this.drawMarker(u)] },
          axes: [
            // Times in Vietnam (UTC+7) whatever the browser's zone: HH:mm, or dd/MM for ranges of days.
            { stroke: '#9fb3c8', size: 28, space: 60, grid: { stroke: '#ffffff12', width: 1 }, ticks: { stroke: '#ffffff20', width: 1, size: 4 }, values: (_u, splits, _axis, _space, increment) => splits.map((s) => (increment >= DAY_MS / 1000 ? formatDay(s * 1000) : formatShortTime(s * 1000))) },
            { stroke: '#9fb3c8', size: 52, space: 24, grid: { stroke: '#ffffff12', width: 1 }, ticks: { show: false }, values: (_u, splits, _axis, _space, increment) => splits.map((v) => formatAxisValue(v, increment)) },
          ],
        },
        [[], []],
        box,
      );
      this.charts.push({ field, plot, caption });
    });
  }

  private drawMarker(u: uPlot): void {
    const at = this.markerS;
    const [min, max] = this.rangeS;
    // Outside the window (a seek whose history is still loading): no line rather than one at the edge.
    if (at === null || at < min || at > max) return;
    const x = Math.round(u.valToPos(at, 'x', true));
    const { ctx } = u;
    ctx.save();
    ctx.strokeStyle = MARKER_COLOR;
    ctx.lineWidth = Math.max(1, Math.round(devicePixelRatio * 1.5));
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.restore();
  }
}

/** "PM2.5 (µg/m³)" in the current language. */
function captionText(field: string): string {
  const unit = fieldUnit(field);
  return `${pick(fieldLabel(field), lang())}${unit ? ` (${unit})` : ''}`;
}

const dayFormat = new Intl.DateTimeFormat('en-GB', { timeZone: TIME_ZONE, day: '2-digit', month: '2-digit' });

/** dd/MM in Vietnam time (axis ticks a day or more apart). */
function formatDay(ms: number): string {
  return dayFormat.format(ms);
}
