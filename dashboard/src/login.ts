import { type SessionInfo } from '@citypulse/contracts';
import { login } from './api.js';
import { lang, messages, setLang, tx } from './i18n.js';
import { h } from './ui/dom.js';

const M = messages({
  signIn: { vi: 'Đăng nhập', en: 'Sign in' },
  subtitle: { vi: 'Trung tâm điều hành đô thị thông minh', en: 'Smart-city operations centre' },
  username: { vi: 'Tên đăng nhập', en: 'Username' },
  password: { vi: 'Mật khẩu', en: 'Password' },
  missing: { vi: 'Nhập tên đăng nhập và mật khẩu', en: 'Enter your username and password' },
  switchLanguage: { vi: 'English', en: 'Tiếng Việt' },
});

/** The login screen. Shows the api's own error message (e.g. wrong password) under the form. */
export function renderLogin(root: HTMLElement, onLoggedIn: (session: SessionInfo) => void, notice?: string): void {
  const username = h('input', { attrs: { id: 'login-username', name: 'username', autocomplete: 'username', required: '', maxlength: '64' } });
  const password = h('input', { attrs: { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: '', maxlength: '256' } });
  const submit = tx(h('button', { attrs: { type: 'submit' } }), M.signIn);
  const error = h('p', { className: 'login-error', attrs: { role: 'alert', 'data-testid': 'login-error' } });
  error.hidden = notice === undefined;
  error.textContent = notice ?? '';

  const usernameLabel = tx(h('label', { attrs: { for: username.id } }), M.username);
  const passwordLabel = tx(h('label', { attrs: { for: password.id } }), M.password);
  const langButton = tx(h('button', { className: 'lang-toggle', attrs: { type: 'button', 'data-testid': 'lang-toggle' } }), M.switchLanguage);
  langButton.addEventListener('click', () => setLang(lang() === 'vi' ? 'en' : 'vi'));

  const form = h('form', { className: 'login-form', attrs: { novalidate: '' } }, [
    h('h1', {}, ['CityPulse']),
    tx(h('p', { className: 'login-sub' }), M.subtitle),
    usernameLabel,
    username,
    passwordLabel,
    password,
    submit,
    error,
  ]);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (username.value.trim() === '' || password.value === '') {
      error.hidden = false;
      error.textContent = M.missing();
      return;
    }
    submit.disabled = true;
    error.hidden = true;
    login({ username: username.value.trim(), password: password.value })
      .then((session) => onLoggedIn(session))
      .catch((err: unknown) => {
        error.hidden = false;
        error.textContent = err instanceof Error ? err.message : String(err);
        password.select();
      })
      .finally(() => {
        submit.disabled = false;
      });
  });

  root.replaceChildren(h('main', { className: 'login-screen' }, [h('div', { className: 'login-lang' }, [langButton]), form]));
  username.focus();
}
