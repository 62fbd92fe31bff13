// A worker thread of a simulation (see simulation.ts). Worker threads do not inherit the loader
// hooks tsx registers in the main thread, so the worker registers tsx itself unless TypeScript
// already loads (a failed import is cached per URL, hence the query on the retry).
try {
  await import('./simulation-worker.ts');
} catch (err) {
  if (err?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
  const { register } = await import('tsx/esm/api');
  register();
  await import('./simulation-worker.ts?tsx');
}
