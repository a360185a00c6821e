import { remote } from "multirank";

/**
 * A remote function: it runs in its own environment, where its dependencies
 * (and only they) are installed, and stays warm for keepAlive seconds.
 * Served as the app fn/sum-numbers; call it from code as sumNumbers({ values }).
 */
export const sumNumbers = remote(
  { name: "sum-numbers", dependencies: ["is-number@7.0.0"], machineType: "cpu", keepAlive: 20 },
  async (input: { values: unknown[] }) => {
    // Imported in the body, so only this function has to declare the package.
    const { default: isNumber } = await import("is-number");
    const numbers = input.values.filter((x) => isNumber(x)).map(Number);
    return { sum: numbers.reduce((sum, x) => sum + x, 0), counted: numbers.length };
  },
);
