import { PROVINCES } from '@citypulse/contracts';
import { h } from './dom.js';

/** Value of the whole-country option. */
export const WHOLE_COUNTRY = '';

/** A <select> of "Toàn quốc" and the 34 provincial units by Vietnamese name. */
export function renderProvincePicker(onChange: (code: string | null) => void): HTMLSelectElement {
  const collator = new Intl.Collator('vi');
  const provinces = [...PROVINCES].sort((a, b) => collator.compare(a.name, b.name));
  const select = h('select', { className: 'province-picker', attrs: { 'aria-label': 'Chọn tỉnh/thành phố (province)', name: 'province' } }, [
    h('option', { text: 'Toàn quốc (34 tỉnh/thành)', attrs: { value: WHOLE_COUNTRY } }),
    ...provinces.map((p) => h('option', { text: `${p.name} (${p.code})`, attrs: { value: p.code } })),
  ]);
  select.addEventListener('change', () => onChange(select.value === WHOLE_COUNTRY ? null : select.value));
  return select;
}
