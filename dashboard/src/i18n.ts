/**
 * Vietnamese first, English as a toggle. Each module declares its own messages next to the code
 * that shows them (`messages({...})`), so there is no central dictionary to drift; a message is a
 * function of the current language. Text bound with `tx()` follows a language change by itself;
 * components that render dynamic text subscribe with `onLanguageChange` and re-render.
 */

export const LANGUAGES = ['vi', 'en'] as const;
export type Lang = (typeof LANGUAGES)[number];

/** One text in both languages, or a function of parameters giving it. */
export type Translation = { readonly vi: string; readonly en: string };
type Entry = Translation | ((...args: never[]) => Translation);

/** A message: call it for the text in the current language. */
export type Message<A extends unknown[] = []> = (...args: A) => string;
type Messages<T extends Record<string, Entry>> = {
  readonly [K in keyof T]: T[K] extends (...args: infer A) => Translation ? Message<A> : Message;
};

const STORAGE_KEY = 'citypulse.lang';
let current: Lang = readStoredLang();
const listeners = new Set<(lang: Lang) => void>();
/** Elements whose text is one message (tx): relabelled on a language change while in the page. */
const bound: { ref: WeakRef<HTMLElement>; message: Message; attr: string | null }[] = [];

function readStoredLang(): Lang {
  try {
    const stored = globalThis.localStorage?.getItem(STORAGE_KEY);
    return stored === 'en' ? 'en' : 'vi';
  } catch {
    return 'vi';
  }
}

export function lang(): Lang {
  return current;
}

/** Switches the language everywhere: bound texts, `<html lang>`, and every subscriber. */
export function setLang(next: Lang): void {
  if (next === current) return;
  current = next;
  try {
    globalThis.localStorage?.setItem(STORAGE_KEY, next);
  } catch {
    // private mode: the choice lasts for this page only
  }
  if (typeof document !== 'undefined') document.documentElement.lang = next;
  for (let i = bound.length - 1; i >= 0; i--) {
    const item = bound[i];
    const el = item?.ref.deref();
    if (!item || !el) {
      bound.splice(i, 1);
      continue;
    }
    if (item.attr === null) el.textContent = item.message();
    else el.setAttribute(item.attr, item.message());
  }
  for (const listener of listeners) listener(next);
}

/** Calls `listener` after every language change; returns the unsubscribe function. */
export function onLanguageChange(listener: (lang: Lang) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Declares a module's messages; `pick` is exported for tests and for text outside the DOM. */
export function messages<T extends Record<string, Entry>>(table: T): Messages<T> {
  const out: Record<string, Message<never[]>> = {};
  for (const [key, entry] of Object.entries(table)) {
    out[key] = typeof entry === 'function' ? (...args: never[]) => pick(entry(...args)) : () => pick(entry);
  }
  return out as Messages<T>;
}

export function pick(text: Translation, language: Lang = current): string {
  return language === 'en' ? text.en : text.vi;
}

/**
 * Sets `el`'s text (or attribute) to `message` now and after every language change. The binding
 * is weak: an element dropped from the page is forgotten.
 */
export function tx<E extends HTMLElement>(el: E, message: Message, attr: string | null = null): E {
  if (attr === null) el.textContent = message();
  else el.setAttribute(attr, message());
  bound.push({ ref: new WeakRef(el), message, attr });
  return el;
}

if (typeof document !== 'undefined') document.documentElement.lang = current;
