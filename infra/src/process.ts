/**
 * Calls `stop` once when the process should shut down: on SIGTERM, and on SIGINT unless a
 * supervisor (npm start) runs it. Supervised children ignore the terminal's Ctrl+C, so the
 * supervisor can stop them in order (devices, readers, broker, database), and they stop by
 * themselves when the supervisor dies (their stdin closes).
 */
export function onShutdown(stop: (reason: string) => void): void {
  let called = false;
  const once = (reason: string) => {
    if (called) return;
    called = true;
    // Let the event loop end once `stop` is done: a resumed stdin would keep the process alive.
    if (process.env.CITYPULSE_SUPERVISED === '1') process.stdin.destroy();
    stop(reason);
  };
  process.on('SIGTERM', () => once('SIGTERM'));
  if (process.env.CITYPULSE_SUPERVISED === '1') {
    process.on('SIGINT', () => undefined);
    process.stdin.on('end', () => once('supervisor exited'));
    process.stdin.on('error', () => once('supervisor exited'));
    process.stdin.resume();
  } else {
    process.on('SIGINT', () => once('SIGINT'));
  }
}
