export * from './app.js';
export * from './registry.js';
