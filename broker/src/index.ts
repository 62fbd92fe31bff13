export * from './acl.js';
export * from './app.js';
export * from './config.js';
export * from './registry.js';
export * from './limits.js';
export * from './metrics.js';
export * from './persistence.js';
