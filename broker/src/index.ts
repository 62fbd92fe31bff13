export * from './acl.js';
export * from './app.js';
export * from './config.js';
export * from './registry.js';
