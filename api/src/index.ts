export * from './app.js';
export * from './config.js';
export * from './history.js';
export * from './live.js';
export * from './operators.js';
export * from './sessions.js';
export * from './audit.js';
export * from './rights.js';
