import { type Province } from '@citypulse/contracts';
import { type MapEngine, type MapInstance } from './engine.js';

interface Label {
  readonly province: Province;
  readonly el: HTMLElement;
  readonly marker: InstanceType<MapEngine['Marker']>;
  width: number;
  height: number;
}

/** Space kept between two labels, px. */
const LABEL_GAP_PX = 4;
/**
 * Names sit below the label point: simulated and real device clusters are centred on it, and the
 * name must not hide their points.
 */
const LABEL_OFFSET_Y_PX = 9;

/**
 * Province names in Vietnamese as HTML markers at each province's label point (a point inside the
 * polygon, from the catalogue). A symbol layer would need glyph PBFs the project does not ship.
 * At country scale the 34 names overlap in the north, so a small greedy collision pass (centrally
 * run cities first, then by population) hides the labels that would overlap a placed one.
 */
export class ProvinceLabels {
  private readonly labels: Label[];
  private frame = 0;
  private selected: string | null = null;

  constructor(
    private readonly map: MapInstance,
    engine: MapEngine,
    provinces: readonly Province[],
  ) {
    const ordered = [...provinces].sort((a, b) => rank(b) - rank(a));
    this.labels = ordered.map((province) => {
      const el = document.createElement('div');
      el.className = 'province-label';
      el.textContent = province.name;
      el.title = `${province.name} (${province.nameEn}) · ${province.code}`;
      el.dataset.code = province.code;
      const marker = new engine.Marker({ element: el, anchor: 'top', offset: [0, LABEL_OFFSET_Y_PX] }).setLngLat([province.label[0], province.label[1]]).addTo(map);
      return { province, el, marker, width: 0, height: 0 };
    });
    map.on('move', this.schedule);
    map.on('resize', this.schedule);
    this.schedule();
  }

  select(code: string | null): void {
    this.selected = code;
    for (const label of this.labels) label.el.classList.toggle('selected', label.province.code === code);
    this.schedule();
  }

  remove(): void {
    cancelAnimationFrame(this.frame);
    this.map.off('move', this.schedule);
    this.map.off('resize', this.schedule);
    for (const label of this.labels) label.marker.remove();
  }

  private readonly schedule = (): void => {
    if (this.frame !== 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.layout();
    });
  };

  private layout(): void {
    const canvas = this.map.getCanvas();
    const viewW = canvas.clientWidth;
    const viewH = canvas.clientHeight;
    const placed: { x0: number; y0: number; x1: number; y1: number }[] = [];
    // The selected province's name always shows; it is placed first.
    const order = this.selected === null ? this.labels : [...this.labels].sort((a, b) => Number(b.province.code === this.selected) - Number(a.province.code === this.selected));
    for (const label of order) {
      if (label.width === 0) {
        label.width = label.el.offsetWidth;
        label.height = label.el.offsetHeight;
      }
      const p = this.map.project([label.province.label[0], label.province.label[1]]);
      const top = p.y + LABEL_OFFSET_Y_PX;
      const box = { x0: p.x - label.width / 2 - LABEL_GAP_PX, y0: top - LABEL_GAP_PX, x1: p.x + label.width / 2 + LABEL_GAP_PX, y1: top + label.height + LABEL_GAP_PX };
      const inView = box.x1 > 0 && box.y1 > 0 && box.x0 < viewW && box.y0 < viewH;
      const free = inView && !placed.some((o) => box.x0 < o.x1 && box.x1 > o.x0 && box.y0 < o.y1 && box.y1 > o.y0);
      label.el.classList.toggle('hidden', !free);
      if (free) placed.push(box);
    }
  }
}

function rank(p: Province): number {
  return (p.type === 'city' ? 1e12 : 0) + p.population;
}
