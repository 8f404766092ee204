// The user that passport stores on req.user after a successful login.
import 'passport';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface User {
      id: string;
      username: string;
      role: 'admin' | 'member';
    }
  }
}
