/**
 * Whether an address or host name never leaves this machine: `localhost`,
 * any 127.0.0.0/8 address (also IPv4-mapped, `::ffff:127.0.0.1`, as a dual-stack
 * socket reports it), and `::1` (also bracketed, as in a URL).
 */
export function isLoopback(address: string): boolean {
  return /^(localhost|::1|\[::1\]|(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i.test(address);
}
