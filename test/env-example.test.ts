import fs from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { loadConfig } from '../src/config';

const root = path.join(__dirname, '..');

/** Read .env.example with Node's own parser, the one behind `node --env-file`. */
function readEnvExample(): Record<string, string> {
  return parseEnv(fs.readFileSync(path.join(root, '.env.example'), 'utf8')) as Record<
    string,
    string
  >;
}

/** Names of the variables in config.ts's schema: the keys written in SCREAMING_CASE. */
function configVariables(): string[] {
  const source = fs.readFileSync(path.join(root, 'src', 'config.ts'), 'utf8');
  const schema = source.slice(source.indexOf('const envSchema'), source.indexOf('.superRefine('));
  return [...schema.matchAll(/^ {4}([A-Z][A-Z0-9_]+):/gm)].map((match) => match[1] ?? '');
}

describe('.env.example', () => {
  it('lists every variable of config.ts', () => {
    const listed = Object.keys(readEnvExample());
    const variables = configVariables();

    expect(variables.length).toBeGreaterThan(30);
    expect(variables.filter((name) => !listed.includes(name))).toEqual([]);
    expect(listed.filter((name) => !variables.includes(name))).toEqual([]);
  });

  it('gives the same settings as no variables at all', () => {
    expect(loadConfig(readEnvExample())).toEqual(loadConfig({}));
  });
});
