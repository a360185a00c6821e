/**
 * The JSON Schema (draft 2020-12) of a {@link WorldSizeBenchmarkReport}, as
 * `multirank bench --json` writes it, and a small validator for the subset of
 * JSON Schema it uses, so scripts and tests can check a report with no
 * dependency.
 */
import { ValidationError } from "../errors.js";
import { REPORT_SCHEMA_VERSION } from "./report.js";

/** A JSON Schema object (the keywords {@link validateAgainstSchema} understands, plus annotations). */
export interface JsonSchema {
  $schema?: string;
  $id?: string;
  title?: string;
  description?: string;
  type?: "object" | "array" | "string" | "number" | "integer" | "boolean" | "null";
  const?: unknown;
  enum?: readonly unknown[];
  minimum?: number;
  minLength?: number;
  minItems?: number;
  format?: string;
  properties?: Readonly<Record<string, JsonSchema>>;
  required?: readonly string[];
  additionalProperties?: boolean;
  items?: JsonSchema;
}

const nonNegative: JsonSchema = { type: "number", minimum: 0 };

const latencySummary: JsonSchema = {
  type: "object",
  description: "Nearest-rank percentiles, mean, min and max, in milliseconds.",
  required: ["count", "p50", "p90", "p99", "mean", "min", "max"],
  additionalProperties: false,
  properties: {
    count: { type: "integer", minimum: 1 },
    p50: nonNegative,
    p90: nonNegative,
    p99: nonNegative,
    mean: nonNegative,
    min: nonNegative,
    max: nonNegative,
  },
};

/** The report's JSON Schema. Frozen; `schemaVersion` in a report must equal the `const` here. */
export const REPORT_SCHEMA: JsonSchema = deepFreeze({
  $schema: "https://json-schema.org/draft/2020-12/schema",
  $id: "https://github.com/multirank/multirank/schemas/world-size-benchmark-report.json",
  title: "multirank world-size benchmark report",
  type: "object",
  required: ["schemaVersion", "createdAt", "worker", "settings", "environment", "results"],
  additionalProperties: false,
  properties: {
    schemaVersion: { const: REPORT_SCHEMA_VERSION },
    createdAt: { type: "string", format: "date-time", minLength: 1 },
    worker: { type: "string", minLength: 1 },
    settings: {
      type: "object",
      required: ["worldSizes", "requests", "concurrency", "warmup", "payloadBytes", "payloadKind", "stream", "quick"],
      additionalProperties: false,
      properties: {
        worldSizes: { type: "array", minItems: 1, items: { type: "integer", minimum: 1 } },
        requests: { type: "integer", minimum: 1 },
        concurrency: { type: "integer", minimum: 1 },
        warmup: { type: "integer", minimum: 0 },
        payloadBytes: { type: "integer", minimum: 0 },
        payloadKind: { enum: ["default", "bytes", "custom"] },
        stream: { type: "boolean" },
        quick: { type: "boolean" },
      },
    },
    environment: {
      type: "object",
      required: ["node", "platform", "arch", "cpus"],
      additionalProperties: false,
      properties: {
        node: { type: "string" },
        platform: { type: "string" },
        arch: { type: "string" },
        cpus: { type: "integer", minimum: 1 },
      },
    },
    results: {
      type: "array",
      items: {
        type: "object",
        required: ["worldSize", "devices", "coldStartMs", "stopMs", "latencyMs", "durationMs", "requestsPerSecond"],
        additionalProperties: false,
        properties: {
          worldSize: { type: "integer", minimum: 1 },
          devices: { type: "array", items: { type: "string", minLength: 1 } },
          coldStartMs: nonNegative,
          stopMs: nonNegative,
          latencyMs: latencySummary,
          durationMs: nonNegative,
          requestsPerSecond: nonNegative,
          stream: {
            type: "object",
            required: ["timeToFirstEventMs", "events", "eventsPerSecond"],
            additionalProperties: false,
            properties: {
              timeToFirstEventMs: latencySummary,
              events: { type: "integer", minimum: 0 },
              eventsPerSecond: nonNegative,
            },
          },
        },
      },
    },
  },
} satisfies JsonSchema);

/**
 * Checks `value` against `schema`, supporting the keywords of
 * {@link JsonSchema}: type, const, enum, minimum, minLength, minItems,
 * properties, required, additionalProperties (boolean) and items.
 * `format`, `title`, `description`, `$id` and `$schema` are annotations only.
 *
 * @returns one message per problem, each starting with a JSON Pointer
 *   (`/results/0/latencyMs/p50: must be >= 0`); empty when `value` is valid.
 * @example validateAgainstSchema(JSON.parse(text), REPORT_SCHEMA) // []
 */
export function validateAgainstSchema(value: unknown, schema: JsonSchema, pointer = ""): string[] {
  const at = pointer || "/";
  const errors: string[] = [];
  if (schema.const !== undefined && value !== schema.const) errors.push(`${at}: must be ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${at}: must be one of ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}`);
  if (schema.type && !hasType(value, schema.type)) return [...errors, `${at}: must be of type ${schema.type}`];
  if (typeof value === "number" && schema.minimum !== undefined && value < schema.minimum) errors.push(`${at}: must be >= ${schema.minimum}`);
  if (typeof value === "string" && schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${at}: must have at least ${schema.minLength} characters`);
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${at}: must have at least ${schema.minItems} items`);
    if (schema.items) value.forEach((item, i) => errors.push(...validateAgainstSchema(item, schema.items!, `${pointer}/${i}`)));
  } else if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in record)) errors.push(`${at}: must have property ${JSON.stringify(key)}`);
    for (const [key, child] of Object.entries(record)) {
      const childSchema = schema.properties?.[key];
      if (childSchema) errors.push(...validateAgainstSchema(child, childSchema, `${pointer}/${escapePointer(key)}`));
      else if (schema.additionalProperties === false) errors.push(`${at}: must not have property ${JSON.stringify(key)}`);
    }
  }
  return errors;
}

/**
 * Throws unless `value` is a valid report.
 *
 * @throws {ValidationError} listing every problem, each with its JSON Pointer.
 * @example assertValidReport(JSON.parse(await readFile("bench.json", "utf8")));
 */
export function assertValidReport(value: unknown): void {
  const errors = validateAgainstSchema(value, REPORT_SCHEMA);
  if (errors.length > 0) throw new ValidationError(`not a valid benchmark report:\n  ${errors.join("\n  ")}`);
}

function hasType(value: unknown, type: NonNullable<JsonSchema["type"]>): boolean {
  switch (type) {
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    case "array":
      return Array.isArray(value);
    case "integer":
      return Number.isInteger(value);
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "null":
      return value === null;
    default:
      return typeof value === type;
  }
}

function escapePointer(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
