import helmet from 'helmet';
import type { RequestHandler } from 'express';

/**
 * Create helmet with a CSP for server-rendered pages: scripts and styles from this origin only,
 * images also from the S3 origin that signed URLs point to.
 */
export function createSecurityHeaders(imageOrigins: string[]): RequestHandler {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: true,
      directives: {
        'default-src': ["'self'"],
        'img-src': ["'self'", 'data:', ...imageOrigins],
        'script-src': ["'self'"],
        'style-src': ["'self'"],
        'form-action': ["'self'"],
        'frame-ancestors': ["'none'"],
        // Off: it would rewrite http:// image URLs of a plain-HTTP S3 endpoint (the embedded server,
        // a LAN MinIO) to https:// and break them. Behind TLS, use an https S3 endpoint instead.
        'upgrade-insecure-requests': null,
      },
    },
    // Redirects to another origin must not carry the page path in Referer to S3.
    referrerPolicy: { policy: 'same-origin' },
    // Cross-origin image loads from S3 need no CORP/COEP opt-in for <img>.
    crossOriginEmbedderPolicy: false,
  });
}
