// The user that passport stores on req.user after a successful login.
import 'passport';

declare global {
  namespace Express {
    interface User {
      id: string;
      username: string;
      role: 'admin' | 'member';
    }
  }
}

declare module 'express-session' {
  interface SessionData {
    /** When the user signed in, in milliseconds since the epoch. */
    signedInAt: number;
    /** What passport keeps in the session: the signed-in user's id. */
    passport?: { user?: unknown };
  }
}
