import express, { type Router } from 'express';
import { requireUser } from '../auth/guards';
import type { ImageRepository } from '../images/image-repository';
import { csrfProtection } from './csrf';

/** Create the gallery page: every image the user may see, as <img src="/image/:id">. */
export function createGalleryRoutes(images: ImageRepository): Router {
  const router = express.Router();

  router.get('/', requireUser, csrfProtection, async (req, res) => {
    const list = await images.list();
    const uploaded = Number(req.query.uploaded);
    res.render('gallery', {
      title: 'Gallery',
      images: list,
      notice:
        // The count comes from the upload page's redirect; anything else is not worth showing.
        Number.isInteger(uploaded) && uploaded > 0 && uploaded <= 1000
          ? `Uploaded ${uploaded} image${uploaded === 1 ? '' : 's'}.`
          : undefined,
    });
  });

  return router;
}
