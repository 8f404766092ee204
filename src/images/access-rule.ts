import type { ImageRecord } from './image-repository';

/** The signed-in user as the image routes see it. */
export interface Viewer {
  id: string;
  role: 'admin' | 'member';
}

/**
 * Decide whether a viewer may see an image. Every signed-in account may view every image;
 * a host app with finer rules passes its own `authorize` hook to the image router.
 */
export function canView(_viewer: Viewer, _image: ImageRecord): boolean {
  return true;
}
