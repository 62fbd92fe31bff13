import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BROKER_CONFIG } from '@citypulse/broker';
import { INGEST_CONFIG } from '@citypulse/ingest';
import { API_CONFIG } from '@citypulse/api';
import { START_CONFIG } from '../scripts/start-config.js';

/** The docs stay true: every variable a service reads is in .env.example and the README's table, and nothing else is. */
describe('configuration docs', () => {
  const variables = new Set([START_CONFIG, BROKER_CONFIG, INGEST_CONFIG, API_CONFIG].flatMap((spec) => Object.keys(spec)));
  const read = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');

  it('.env.example lists exactly the variables the services read', () => {
    const listed = new Set([...read('.env.example').matchAll(/^# ([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]));
    expect([...listed].sort()).toEqual([...variables].sort());
  });

  it('the README configuration table names every variable', () => {
    const readme = read('README.md');
    for (const name of variables) expect(readme, name).toContain(`\`${name}\``);
  });
});
