import { PROVINCE_CODES, provinceByCode, type Province } from '@citypulse/contracts';
import { messages, tx } from '../i18n.js';
import { h } from './dom.js';

/** Value of the whole-scope option. */
export const WHOLE_COUNTRY = '';

const M = messages({
  label: { vi: 'Chọn tỉnh/thành phố', en: 'Choose a province' },
  country: { vi: 'Toàn quốc (34 tỉnh/thành)', en: 'Whole country' },
  scope: (n: number) => ({ vi: `Toàn bộ phạm vi (${n} tỉnh/thành)`, en: `All my provinces (${n})` }),
  province: (p: Province) => ({ vi: `${p.name} (${p.code})`, en: `${p.nameEn} (${p.code})` }),
});

/**
 * A <select> of the whole scope and each province the operator may watch (all 34 unless their
 * account is scoped), by name in the current language. Provinces outside the scope are not offered.
 */
export function renderProvincePicker(scope: readonly string[], onChange: (code: string | null) => void): HTMLSelectElement {
  const provinces = scope.map((code) => provinceByCode(code)).filter((p): p is Province => p !== undefined);
  const whole = provinces.length === PROVINCE_CODES.length ? M.country : () => M.scope(provinces.length);
  // Sorted once by the Vietnamese names (the official ones); the labels follow the language.
  const collator = new Intl.Collator('vi');
  provinces.sort((a, b) => collator.compare(a.name, b.name));
  const select = tx(
    h('select', { className: 'province-picker', attrs: { name: 'province' } }, [
      tx(h('option', { attrs: { value: WHOLE_COUNTRY } }), whole),
      ...provinces.map((p) => tx(h('option', { attrs: { value: p.code } }), () => M.province(p))),
    ]),
    M.label,
    'aria-label',
  );
  select.addEventListener('change', () => onChange(select.value === WHOLE_COUNTRY ? null : select.value));
  return select;
}
