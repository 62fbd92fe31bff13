import { type HistoryResponse } from '@citypulse/contracts';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { fieldLabel, fieldUnit, formatAxisValue, formatShortTime } from '../format.js';
import { h } from './dom.js';

const SERIES_COLORS = ['#4fc3f7', '#ffb74d', '#aed581', '#f06292'] as const;
const CHART_HEIGHT_PX = 120;

/**
 * A device's recent history as small multiples: one uPlot per field (each with its own unit and
 * axis), cursors synced. Built once per set of fields; refreshes only call setData.
 */
export class HistoryCharts {
  readonly el = h('div', { className: 'history-charts' });
  private charts: { field: string; plot: uPlot }[] = [];
  private fieldsKey = '';
  /** The requested window in uPlot's seconds: the x axis always spans it, however sparse the data. */
  private rangeS: [number, number] = [0, 1];
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
      const unit = fieldUnit(field);
      const color = SERIES_COLORS[i % SERIES_COLORS.length] ?? '#4fc3f7';
      const box = h('figure', { className: 'history-chart' }, [h('figcaption', { text: `${label.vi}${unit ? ` (${unit})` : ''}`, title: label.en })]);
      this.el.append(box);
      const plot = new uPlot(
        {
          width,
          height: CHART_HEIGHT_PX,
          legend: { show: false },
          cursor: { sync: { key: this.syncKey }, drag: { x: false, y: false } },
          scales: { x: { time: true, range: () => this.rangeS } },
          series: [{}, { label: label.vi, stroke: color, width: 1.5, fill: `${color}22`, spanGaps: false }],
          axes: [
            // Times in Vietnam (UTC+7) whatever the browser's zone, HH:mm.
            { stroke: '#9fb3c8', size: 28, space: 60, grid: { stroke: '#ffffff12', width: 1 }, ticks: { stroke: '#ffffff20', width: 1, size: 4 }, values: (_u, splits) => splits.map((s) => formatShortTime(s * 1000)) },
            { stroke: '#9fb3c8', size: 52, space: 24, grid: { stroke: '#ffffff12', width: 1 }, ticks: { show: false }, values: (_u, splits, _axis, _space, increment) => splits.map((v) => formatAxisValue(v, increment)) },
          ],
        },
        [[], []],
        box,
      );
      this.charts.push({ field, plot });
    });
  }
}
