/** Environment variables the local host sets for a function's ranks. */
export const FUNCTION_ENV = Object.freeze({ module: "MULTIRANK_FUNCTION_MODULE", name: "MULTIRANK_FUNCTION_NAME" });
