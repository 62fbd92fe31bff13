import { provinceByCode, type Province } from '@citypulse/contracts';
import { DOMAIN_LABELS } from '../format.js';
import { lang, messages, onLanguageChange, pick, tx } from '../i18n.js';
import type { DeviceEntry } from '../live/store.js';
import { h } from './dom.js';
import './search.css';

/** Results shown at most. */
export const SEARCH_LIMIT = 12;
/** Provinces take at most this many of the results, so devices still show for a short query. */
const PROVINCE_SHARE = 6;

/* ---------- Pure ranking (unit-tested) ---------- */

/** What a device must have to be searched. */
export interface SearchableDevice {
  readonly id: string;
  readonly name: string;
  readonly province: string;
}

/** What a province must have to be searched (contracts' Province has it). */
export interface SearchableProvince {
  readonly code: string;
  readonly name: string;
  readonly nameEn?: string;
}

/** A hit; lower rank is better (devices: 0 exact id, 1 id prefix, 2 name word prefix, 3 substring). */
export type SearchResult<D extends SearchableDevice = SearchableDevice, P extends SearchableProvince = SearchableProvince> =
  | { readonly kind: 'province'; readonly province: P; readonly rank: number }
  | { readonly kind: 'device'; readonly device: D; readonly rank: number };

/**
 * Lower case without diacritics, so "ha noi" finds "Hà Nội" (đ has no decomposition in Unicode,
 * hence its own replacement).
 */
export function fold(text: string): string {
  return text.normalize('NFD').replace(/\p{M}+/gu, '').replace(/[đĐ]/g, 'd').toLowerCase();
}

const WORD_SPLIT = /[^\p{L}\p{N}]+/u;

interface Folded {
  readonly source: string;
  readonly text: string;
  readonly words: readonly string[];
}

function folded(text: string): Folded {
  const f = fold(text);
  return { source: text, text: f, words: f.split(WORD_SPLIT).filter(Boolean) };
}

/** Folded names per device object, recomputed only when the name changes (a list refresh). */
const nameCache = new WeakMap<object, Folded>();
const idCache = new Map<string, string>();

function foldedName(device: SearchableDevice): Folded {
  let f = nameCache.get(device);
  if (!f || f.source !== device.name) {
    f = folded(device.name);
    nameCache.set(device, f);
  }
  return f;
}

function foldedId(id: string): string {
  let f = idCache.get(id);
  if (f === undefined) {
    f = fold(id);
    // Ids are few and fixed; the bound only guards against a churn of throwaway ids.
    if (idCache.size > 200_000) idCache.clear();
    idCache.set(id, f);
  }
  return f;
}

const everyTokenPrefixesAWord = (tokens: readonly string[], words: readonly string[]): boolean => tokens.every((t) => words.some((w) => w.startsWith(t)));

function deviceRank(query: string, tokens: readonly string[], device: SearchableDevice): number | undefined {
  const id = foldedId(device.id);
  if (id === query) return 0;
  if (id.startsWith(query)) return 1;
  const name = foldedName(device);
  if (everyTokenPrefixesAWord(tokens, name.words)) return 2;
  if (id.includes(query) || name.text.includes(query) || tokens.every((t) => id.includes(t) || name.text.includes(t))) return 3;
  return undefined;
}

function provinceRank(query: string, tokens: readonly string[], province: SearchableProvince): number | undefined {
  const names = [folded(province.name), ...(province.nameEn ? [folded(province.nameEn)] : [])];
  if (province.code === query || names.some((n) => n.text === query)) return 0;
  if (names.some((n) => everyTokenPrefixesAWord(tokens, n.words))) return 1;
  if (names.some((n) => n.text.includes(query))) return 2;
  return undefined;
}

const collator = new Intl.Collator('vi', { numeric: true, sensitivity: 'base' });

function compareDevices(a: { rank: number; device: SearchableDevice }, b: { rank: number; device: SearchableDevice }): number {
  return a.rank - b.rank || collator.compare(a.device.name, b.device.name) || (a.device.id < b.device.id ? -1 : a.device.id > b.device.id ? 1 : 0);
}

/**
 * Ranks provinces (by name, English name or code) and devices (by id or name) for a query,
 * ignoring case and Vietnamese diacritics. Matching provinces come first, then devices: exact id,
 * id prefix, every query word starting a word of the name, then substrings. At most `limit`.
 */
export function searchDevices<D extends SearchableDevice, P extends SearchableProvince>(
  query: string,
  entries: Iterable<D>,
  provinces: readonly P[],
  limit = SEARCH_LIMIT,
): SearchResult<D, P>[] {
  const q = fold(query).trim().replace(/\s+/g, ' ');
  if (q === '' || limit <= 0) return [];
  const tokens = q.split(' ');

  const provinceHits: { kind: 'province'; province: P; rank: number }[] = [];
  for (const province of provinces) {
    const rank = provinceRank(q, tokens, province);
    if (rank !== undefined) provinceHits.push({ kind: 'province', province, rank });
  }
  provinceHits.sort((a, b) => a.rank - b.rank || collator.compare(a.province.name, b.province.name));
  const shownProvinces = provinceHits.slice(0, Math.min(PROVINCE_SHARE, limit));

  // The best `room` devices, kept sorted: thousands can match a short query, only a dozen are shown.
  const room = limit - shownProvinces.length;
  const top: { kind: 'device'; device: D; rank: number }[] = [];
  if (room > 0) {
    for (const device of entries) {
      const rank = deviceRank(q, tokens, device);
      if (rank === undefined) continue;
      const hit = { kind: 'device' as const, device, rank };
      const worst = top[top.length - 1];
      if (top.length >= room && worst && compareDevices(hit, worst) >= 0) continue;
      let at = top.length;
      while (at > 0) {
        const before = top[at - 1];
        if (!before || compareDevices(before, hit) <= 0) break;
        at--;
      }
      top.splice(at, 0, hit);
      if (top.length > room) top.pop();
    }
  }
  return [...shownProvinces, ...top];
}

/* ---------- The combobox ---------- */

const M = messages({
  label: { vi: 'Tìm thiết bị hoặc tỉnh/thành', en: 'Find a device or province' },
  placeholder: { vi: 'Tìm thiết bị, tỉnh/thành… ( / )', en: 'Find device, province… ( / )' },
  province: { vi: 'Tỉnh/thành', en: 'Province' },
  results: (n: number) => ({ vi: `${n} kết quả`, en: `${n} ${n === 1 ? 'result' : 'results'}` }),
  none: { vi: 'Không tìm thấy', en: 'Nothing found' },
});

export interface DeviceSearchDeps {
  entries(): Iterable<DeviceEntry>;
  /** The provinces the operator may watch (their scope): no other province is offered. */
  readonly provinces: readonly string[];
  onPickDevice(id: string): void;
  onPickProvince(code: string): void;
}

let searchCount = 0;

/**
 * A WAI-ARIA combobox (list autocomplete, first result preselected) over devices and provinces.
 * Arrow keys move, Enter picks, Escape closes then clears; picking clears the field.
 */
export class DeviceSearch {
  readonly el: HTMLElement;
  private readonly deps: DeviceSearchDeps;
  private readonly listId = `device-search-${++searchCount}`;
  private readonly input: HTMLInputElement;
  private readonly listbox = h('ul', { className: 'search-listbox' });
  private readonly empty = h('p', { className: 'search-empty' });
  private readonly status = h('span', { className: 'search-status', attrs: { role: 'status', 'aria-live': 'polite' } });
  private results: SearchResult<DeviceEntry, Province>[] = [];
  private options: HTMLLIElement[] = [];
  private active = -1;
  private readonly unsubscribe: () => void;
  private readonly provinces: readonly Province[];

  constructor(deps: DeviceSearchDeps) {
    this.deps = deps;
    this.provinces = deps.provinces.map((code) => provinceByCode(code)).filter((p): p is Province => p !== undefined);
    this.listbox.id = this.listId;
    this.listbox.setAttribute('role', 'listbox');
    tx(this.listbox, M.label, 'aria-label');
    this.input = h('input', {
      className: 'search-input',
      attrs: {
        type: 'text',
        role: 'combobox',
        autocomplete: 'off',
        spellcheck: 'false',
        'aria-autocomplete': 'list',
        'aria-expanded': 'false',
        'aria-controls': this.listId,
        'data-testid': 'device-search',
      },
    });
    tx(this.input, M.label, 'aria-label');
    tx(this.input, M.placeholder, 'placeholder');
    this.el = h('div', { className: 'device-search' }, [this.input, this.listbox, this.empty, this.status]);
    this.close();

    this.input.addEventListener('input', () => this.update());
    this.input.addEventListener('focus', () => {
      if (this.input.value.trim() !== '') this.update();
    });
    this.input.addEventListener('keydown', (event) => this.onKey(event));
    this.el.addEventListener('focusout', (event) => {
      if (!(event.relatedTarget instanceof Node && this.el.contains(event.relatedTarget))) this.close();
    });
    // Keep the focus in the field while the mouse presses an option.
    this.listbox.addEventListener('mousedown', (event) => event.preventDefault());
    this.listbox.addEventListener('click', (event) => {
      const option = event.target instanceof Element ? event.target.closest<HTMLElement>('[role="option"]') : null;
      const index = option ? this.options.indexOf(option as HTMLLIElement) : -1;
      if (index >= 0) this.pick(index);
    });
    this.unsubscribe = onLanguageChange(() => {
      if (this.isOpen()) this.draw();
    });
  }

  /** Puts the cursor in the field (the app binds "/" to it). */
  focus(): void {
    this.input.focus();
    this.input.select();
  }

  destroy(): void {
    this.unsubscribe();
  }

  private isOpen(): boolean {
    return this.input.getAttribute('aria-expanded') === 'true' || !this.empty.hidden;
  }

  private update(): void {
    const query = this.input.value;
    if (query.trim() === '') {
      this.close();
      return;
    }
    this.results = searchDevices(query, this.deps.entries(), this.provinces);
    this.active = this.results.length > 0 ? 0 : -1;
    this.draw();
  }

  private draw(): void {
    const language = lang();
    this.options = this.results.map((result, i) => {
      const attrs = { id: `${this.listId}-${i}`, role: 'option', 'aria-selected': 'false', 'data-testid': 'search-option' };
      if (result.kind === 'province') {
        const p = result.province;
        return h('li', { className: 'search-option is-province', attrs: { ...attrs, 'data-kind': 'province', 'data-code': p.code } }, [
          h('span', { className: 'search-tag', text: M.province() }),
          h('span', { className: 'search-name', text: language === 'en' ? p.nameEn : p.name }),
          h('span', { className: 'search-meta', text: p.code }),
        ]);
      }
      const d = result.device;
      const province = provinceByCode(d.province);
      return h('li', { className: 'search-option', attrs: { ...attrs, 'data-kind': 'device', 'data-id': d.id } }, [
        h('span', { className: 'search-name', text: d.name }),
        h('span', { className: 'search-meta', text: `${d.id} · ${province ? (language === 'en' ? province.nameEn : province.name) : d.province} · ${pick(DOMAIN_LABELS[d.domain], language)}` }),
      ]);
    });
    this.listbox.replaceChildren(...this.options);
    const found = this.options.length > 0;
    this.listbox.hidden = !found;
    this.input.setAttribute('aria-expanded', String(found));
    this.empty.textContent = M.none();
    this.empty.hidden = found;
    this.status.textContent = found ? M.results(this.options.length) : M.none();
    this.setActive(this.active);
  }

  private close(): void {
    this.results = [];
    this.options = [];
    this.active = -1;
    this.listbox.replaceChildren();
    this.listbox.hidden = true;
    this.empty.hidden = true;
    this.status.textContent = '';
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
  }

  private setActive(index: number): void {
    this.active = index;
    this.options.forEach((option, i) => option.setAttribute('aria-selected', String(i === index)));
    const option = this.options[index];
    if (option) {
      this.input.setAttribute('aria-activedescendant', option.id);
      option.scrollIntoView({ block: 'nearest' });
    } else {
      this.input.removeAttribute('aria-activedescendant');
    }
  }

  private onKey(event: KeyboardEvent): void {
    const count = this.options.length;
    switch (event.key) {
      case 'ArrowDown':
      case 'ArrowUp': {
        event.preventDefault();
        if (count === 0) {
          this.update();
          return;
        }
        const step = event.key === 'ArrowDown' ? 1 : -1;
        this.setActive((this.active + step + count) % count);
        return;
      }
      case 'Enter':
        if (this.active >= 0 && this.active < count) {
          event.preventDefault();
          this.pick(this.active);
        }
        return;
      case 'Escape':
        // Ours: the app's Escape (close the device panel) must not fire as well.
        event.stopPropagation();
        event.preventDefault();
        if (this.isOpen()) this.close();
        else this.input.value = '';
        return;
      default:
        return;
    }
  }

  private pick(index: number): void {
    const result = this.results[index];
    if (!result) return;
    this.input.value = '';
    this.close();
    if (result.kind === 'province') this.deps.onPickProvince(result.province.code);
    else this.deps.onPickDevice(result.device.id);
  }
}
