/**
 * One value per process under `key`, made by `make` on first use. A process
 * can hold two copies of a module (a rank runs a bundled runtime while a
 * worker may import the package's unbundled files); state both copies must
 * see, such as which buffers are shared memory, lives here instead of in
 * module scope.
 */
export function processWide<T>(key: string, make: () => T): T {
  const slot = Symbol.for(`multirank.process-wide.${key}`);
  const holder = globalThis as unknown as Record<symbol, T | undefined>;
  return (holder[slot] ??= make());
}
