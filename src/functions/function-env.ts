/** Environment variables the local host sets for a function's ranks. */
export const FUNCTION_ENV = Object.freeze({ module: "MULTIRANK_FUNCTION_MODULE", name: "MULTIRANK_FUNCTION_NAME" });

/**
 * A native call's arguments travel as `{ [ARGS_KEY]: args }`; any other input
 * (a fal or Runpod request's JSON body, a direct endpoint's body) is the one
 * argument.
 */
export const ARGS_KEY = "multirank.args";
