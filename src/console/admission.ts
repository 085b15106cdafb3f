/**
 * Requests the console's hook admitted with a live session cookie (and, for state-changing
 * methods, a matching CSRF token). The operator API's guard (src/api/auth.ts) lets them through
 * like a request carrying the admin token, so the console drives the very API scripts use.
 */
const admitted = new WeakSet<object>();

export const admitConsoleRequest = (req: object) => void admitted.add(req);
export const isConsoleRequest = (req: object) => admitted.has(req);
