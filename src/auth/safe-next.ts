/**
 * Return `next` if it is a same-origin path, else "/". Accepted: a single leading "/" followed by
 * anything but "/" or "\" (browsers treat "//host" and "/\host" as another origin), with no
 * control characters and no scheme. Decoding first catches "%2F%2Fevil.example".
 */
export function safeNextPath(next: unknown): string {
  if (typeof next !== 'string' || next.length === 0 || next.length > 2048) return '/';
  let decoded: string;
  try {
    decoded = decodeURIComponent(next);
  } catch {
    return '/';
  }
  for (const candidate of [next, decoded]) {
    if (!candidate.startsWith('/')) return '/';
    if (candidate.startsWith('//') || candidate.startsWith('/\\')) return '/';
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f\\]/.test(candidate)) return '/';
  }
  return next;
}
