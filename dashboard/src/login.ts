import { type SessionInfo } from '@citypulse/contracts';
import { login } from './api.js';
import { bilingual, h } from './ui/dom.js';

/** The login screen. Shows the api's own error message (e.g. wrong password) under the form. */
export function renderLogin(root: HTMLElement, onLoggedIn: (session: SessionInfo) => void, notice?: string): void {
  const username = h('input', { attrs: { id: 'login-username', name: 'username', autocomplete: 'username', required: '', maxlength: '64' } });
  const password = h('input', { attrs: { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: '', maxlength: '256' } });
  const submit = h('button', { attrs: { type: 'submit' } }, [bilingual('Đăng nhập', 'Sign in')]);
  const error = h('p', { className: 'login-error', attrs: { role: 'alert', 'data-testid': 'login-error' } });
  error.hidden = notice === undefined;
  error.textContent = notice ?? '';

  const usernameLabel = bilingual('Tên đăng nhập', 'Username', 'label');
  usernameLabel.setAttribute('for', username.id);
  const passwordLabel = bilingual('Mật khẩu', 'Password', 'label');
  passwordLabel.setAttribute('for', password.id);

  const form = h('form', { className: 'login-form', attrs: { novalidate: '' } }, [
    h('h1', {}, ['CityPulse']),
    h('p', { className: 'login-sub' }, [bilingual('Trung tâm điều hành đô thị thông minh', 'Smart-city operations centre')]),
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
      error.textContent = 'Nhập tên đăng nhập và mật khẩu / Enter username and password';
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

  root.replaceChildren(h('main', { className: 'login-screen' }, [form]));
  username.focus();
}
