/**
 * Checks for the options of the exported factories. They run once, at construction, so a host
 * app that passes a wrong value fails at start with a message that names the factory, the option,
 * the value and the fix, not at its first request.
 */

/** Describe a value for an error message without printing whole objects. */
function show(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'function':
      return 'a function';
    case 'object':
      if (value === null) return 'null';
      return Array.isArray(value) ? 'an array' : 'an object';
    case 'symbol':
      return value.toString();
    default:
      return String(value);
  }
}

function fail(factory: string, message: string, hint: string | undefined): never {
  throw new TypeError(`${factory}: ${message}${hint ? ` ${hint}` : ''}`);
}

/** Require a whole number of at least `min` (1 unless given). */
export function checkInteger(
  factory: string,
  name: string,
  value: unknown,
  { min = 1, hint }: { min?: number; hint?: string } = {},
): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    fail(factory, `\`${name}\` must be a whole number >= ${min}, got ${show(value)}.`, hint);
  }
  return value;
}

/** Require a string that is not empty. */
export function checkNonEmptyString(
  factory: string,
  name: string,
  value: unknown,
  hint?: string,
): string {
  if (typeof value !== 'string' || value === '') {
    fail(factory, `\`${name}\` must be a non-empty string, got ${show(value)}.`, hint);
  }
  return value;
}

/** Require a function, or undefined when `optional`. */
export function checkFunction(
  factory: string,
  name: string,
  value: unknown,
  { optional = false, hint }: { optional?: boolean; hint?: string } = {},
): void {
  if (value === undefined && optional) return;
  if (typeof value !== 'function') {
    fail(factory, `\`${name}\` must be a function, got ${show(value)}.`, hint);
  }
}

/** Require one of the listed strings, or undefined (the default) when the option is optional. */
export function checkOneOf<T extends string>(
  factory: string,
  name: string,
  value: unknown,
  allowed: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    const list = allowed.map((a) => `"${a}"`).join(' or ');
    fail(factory, `\`${name}\` must be ${list}, got ${show(value)}.`, undefined);
  }
  return value as T;
}

/** Require an S3Client from @aws-sdk/client-s3 (v3), such as one from `createS3Client`. */
export function checkS3Client(factory: string, name: string, value: unknown): void {
  const client = value as { send?: unknown; config?: { credentials?: unknown } } | undefined;
  if (typeof client?.send !== 'function' || typeof client.config?.credentials !== 'function') {
    fail(
      factory,
      `\`${name}\` must be an S3Client from @aws-sdk/client-s3, got ${show(value)}.`,
      'Create one with createS3Client({ region, endpoint, credentials }).',
    );
  }
}
