import { type SessionInfo } from '@citypulse/contracts';
import { ApiError, isUnauthorized, me } from './api.js';
import { startApp, type AppHandle } from './app.js';
import { messages } from './i18n.js';
import { renderLogin } from './login.js';
import { h } from './ui/dom.js';
import './styles.css';

const M = messages({
  loading: { vi: 'Đang tải bản đồ…', en: 'Loading the map…' },
  failed: { vi: 'Không khởi động được bảng điều khiển', en: 'The dashboard failed to start' },
});

/** Entry point: an existing session (cookie) goes straight to the map, otherwise the login screen. */
const root = document.getElementById('app') ?? document.body.appendChild(h('div', { attrs: { id: 'app' } }));
let app: AppHandle | null = null;

function showLogin(notice?: string): void {
  app?.destroy();
  app = null;
  renderLogin(root, showApp, notice);
}

function showApp(session: SessionInfo): void {
  root.replaceChildren(h('p', { className: 'loading', text: M.loading() }));
  startApp(root, session, showLogin)
    .then((handle) => {
      app = handle;
    })
    .catch((error: unknown) => {
      if (isUnauthorized(error)) {
        showLogin();
        return;
      }
      console.error('dashboard failed to start', error);
      root.replaceChildren(
        h('div', { className: 'fatal', attrs: { role: 'alert' } }, [
          h('h1', { text: M.failed() }),
          h('p', { text: error instanceof Error ? error.message : String(error) }),
        ]),
      );
    });
}

me()
  .then(showApp)
  .catch((error: unknown) => {
    showLogin(isUnauthorized(error) || !(error instanceof ApiError) ? undefined : error.message);
  });
