import { ValidationError } from "../errors.js";
import { walkData } from "../util/walk-data.js";

/** Raw pixels, row-major, `channels` interleaved bytes per pixel (1, 3 or 4). */
export interface RawImage {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  pixels: Uint8Array;
}

/** An encoded image, as results and stream items deliver it. */
export interface EncodedImage {
  content_type: string;
  width?: number;
  height?: number;
  data: Uint8Array;
}

/** Formats a rank can encode raw pixels to. */
export type ImageFormat = "jpeg" | "png" | "webp";

/** How raw images are encoded. */
export interface ImageEncodeOptions {
  /** @default "jpeg" */
  format?: ImageFormat;
  /** 1-100; ignored for png. */
  quality: number;
}

const CONTENT_TYPES: Record<ImageFormat, string> = { jpeg: "image/jpeg", png: "image/png", webp: "image/webp" };

/** True for `{ width, height, channels, pixels }` whose pixel count matches. */
export function isRawImage(value: unknown): value is RawImage {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Partial<RawImage>;
  return (
    v.pixels instanceof Uint8Array &&
    Number.isInteger(v.width) &&
    Number.isInteger(v.height) &&
    Number.isInteger(v.channels) &&
    v.pixels.length === (v.width as number) * (v.height as number) * (v.channels as number)
  );
}

/** True for `{ content_type: "image/...", data: bytes }`. */
export function isEncodedImage(value: unknown): value is EncodedImage {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Partial<EncodedImage>;
  return typeof v.content_type === "string" && v.content_type.startsWith("image/") && v.data instanceof Uint8Array;
}

type SharpFactory = typeof import("sharp").default;
let sharpModule: Promise<SharpFactory> | undefined;

// sharp costs tens of milliseconds to load; ranks that never make images never pay it.
function loadSharp(): Promise<SharpFactory> {
  sharpModule ??= import("sharp").then((m) => m.default);
  return sharpModule;
}

/** Encodes raw pixels with sharp. Throws {@link ValidationError} for bad geometry. */
export async function encodeImage(image: RawImage, options: ImageEncodeOptions): Promise<EncodedImage> {
  const format = options.format ?? "jpeg";
  if (!(format in CONTENT_TYPES)) throw new ValidationError(`imageFormat must be one of ${Object.keys(CONTENT_TYPES).join(", ")}, got ${String(format)}`);
  if (image.width <= 0 || image.height <= 0 || ![1, 2, 3, 4].includes(image.channels)) {
    throw new ValidationError(`image must have positive width/height and 1-4 channels, got ${image.width}x${image.height}x${image.channels}`);
  }
  const sharp = await loadSharp();
  const input = sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: image.channels } });
  const quality = Math.max(1, Math.min(100, Math.round(options.quality)));
  const encoded =
    format === "jpeg"
      ? input.jpeg({ quality, mozjpeg: false })
      : format === "webp"
        ? input.webp({ quality })
        : input.png();
  const data = await encoded.toBuffer();
  return { content_type: CONTENT_TYPES[format], width: image.width, height: image.height, data };
}

const MAX_DEPTH = 6;

/** Whether `value` holds a raw image where {@link encodeImagesIn} would find one; synchronous. */
export function containsRawImage(value: unknown): boolean {
  return walkData(value, (v) => (isRawImage(v) ? "stop" : undefined), MAX_DEPTH);
}

/**
 * Returns `value` with every raw image inside it (top level, object fields,
 * array items, a few levels deep) replaced by its encoded form. Values without
 * images are returned as they are, not copied.
 */
export async function encodeImagesIn(value: unknown, options: ImageEncodeOptions, depth = 0): Promise<unknown> {
  if (isRawImage(value)) return encodeImage(value, options);
  if (depth >= MAX_DEPTH || typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const next = await encodeImagesIn(value[i], options, depth + 1);
      if (next !== value[i]) (out ??= value.slice())[i] = next;
    }
    return out ?? value;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  let out: Record<string, unknown> | undefined;
  for (const [key, item] of Object.entries(value)) {
    const next = await encodeImagesIn(item, options, depth + 1);
    if (next !== item) (out ??= { ...(value as Record<string, unknown>) })[key] = next;
  }
  return out ?? value;
}
