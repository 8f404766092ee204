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
    /** Passport's entry in the session, with the signed-in user's id. */
    passport?: { user?: unknown };
  }
}
