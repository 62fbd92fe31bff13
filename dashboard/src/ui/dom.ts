/**
 * The one way the dashboard builds DOM. Text always goes through textContent: device names, ids
 * and values come from the field and are never parsed as HTML (no innerHTML anywhere).
 */
type Child = Node | string | null | undefined | false;

export interface ElementOptions {
  readonly className?: string;
  readonly text?: string;
  readonly attrs?: Readonly<Record<string, string>>;
  readonly title?: string;
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, options: ElementOptions = {}, children: readonly Child[] = []): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (options.className) el.className = options.className;
  if (options.title) el.title = options.title;
  if (options.attrs) for (const [name, value] of Object.entries(options.attrs)) el.setAttribute(name, value);
  if (options.text !== undefined) el.textContent = options.text;
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

/** A small coloured square for legends. */
export function swatch(color: string, ring?: string): HTMLElement {
  const el = h('span', { className: 'swatch', attrs: { 'aria-hidden': 'true' } });
  el.style.background = color;
  if (ring) el.style.boxShadow = `0 0 0 2px ${ring}`;
  return el;
}
