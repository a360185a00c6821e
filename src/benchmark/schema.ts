/**
 * The JSON Schema (draft 2020-12) of a {@link WorldSizeBenchmarkReport}, as
 * `multirank bench --json` writes it, and a check of a value against it (Ajv,
 * the validator fastify already brings).
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import { ValidationError } from "../errors.js";
import { REPORT_SCHEMA_VERSION } from "./report.js";

/** A JSON Schema object: the keywords {@link REPORT_SCHEMA} uses (any draft 2020-12 schema validates). */
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
 * Checks `value` against `schema` (JSON Schema draft 2020-12, checked by Ajv
 * with every error reported). `format` is an annotation only, as before Ajv:
 * `createdAt` is written by `new Date().toISOString()`, and checking it would
 * need a second package (ajv-formats).
 *
 * @returns one message per problem, each starting with the JSON Pointer of the
 *   offending value (`/results/0/latencyMs/p50: must be >= 0`); empty when `value` is valid.
 * @throws {ValidationError} when `schema` itself is not a valid schema.
 * @example validateAgainstSchema(JSON.parse(text), REPORT_SCHEMA) // []
 */
export function validateAgainstSchema(value: unknown, schema: JsonSchema): string[] {
  const validate = compiled(schema);
  return validate(value) ? [] : (validate.errors ?? []).map(describeError);
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

let ajv: Ajv2020 | undefined;
const validators = new WeakMap<JsonSchema, ValidateFunction>();

/** One compiled validator per schema object, compiled on first use: compiling costs milliseconds, checking microseconds. */
function compiled(schema: JsonSchema): ValidateFunction {
  let validate = validators.get(schema);
  if (validate) return validate;
  // addUsedSchema: false, so two schemas with one $id (a copy of REPORT_SCHEMA) do not clash in Ajv's registry.
  ajv ??= new Ajv2020({ allErrors: true, strict: true, strictNumbers: true, validateFormats: false, addUsedSchema: false });
  try {
    validate = ajv.compile(schema);
  } catch (error) {
    throw new ValidationError(`not a valid JSON Schema: ${(error as Error).message}`, { cause: error });
  }
  validators.set(schema, validate);
  return validate;
}

/** Ajv's error as one line that names the offending value by its JSON Pointer, and the property or allowed values when Ajv keeps them apart. */
function describeError(error: ErrorObject): string {
  const at = error.instancePath || "/";
  const params = error.params as { additionalProperty?: string; missingProperty?: string; allowedValue?: unknown; allowedValues?: readonly unknown[]; type?: string };
  switch (error.keyword) {
    case "type":
      return `${at}: must be of type ${params.type}`;
    case "required":
      return `${at}: must have property ${JSON.stringify(params.missingProperty)}`;
    case "additionalProperties":
      return `${at}: must not have property ${JSON.stringify(params.additionalProperty)}`;
    case "const":
      return `${at}: must be ${JSON.stringify(params.allowedValue)}`;
    case "enum":
      return `${at}: must be one of ${(params.allowedValues ?? []).map((v) => JSON.stringify(v)).join(", ")}`;
    default:
      return `${at}: ${error.message ?? `fails ${error.keyword}`}`;
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
