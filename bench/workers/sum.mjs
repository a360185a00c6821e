// The baseline of bench/functions: the same sum as its remote function, as a
// plain worker taking the same payload. JavaScript, as the function's bundle
// is, so neither side's cold start pays for loading TypeScript.
import { DistributedWorker } from "multirank";

export default class Sum extends DistributedWorker {
  call(input) {
    return input.args[0].reduce((total, x) => total + x, 0);
  }
}
