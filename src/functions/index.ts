/** Remote functions: re-exports only. */
export { bundleModule, packageNameOf, type Bundle, type BundleOptions } from "./bundle.js";
