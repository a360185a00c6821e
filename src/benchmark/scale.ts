/**
 * Axis ticks for charts: "nice" steps of 1, 2, 2.5 or 5 times a power of ten
 * from zero up to the first tick at or above the data's maximum. Pure.
 */

/** What {@link niceTicks} returns. */
export interface NiceTicks {
  /** Distance between ticks. */
  step: number;
  /** The last tick: the top of the axis, >= the data's maximum. */
  max: number;
  /** 0, step, 2 * step, ..., max. */
  ticks: number[];
  /** Decimals needed to print every tick exactly. */
  decimals: number;
}

/**
 * Ticks from 0 to at least `maxValue`, about `target` intervals apart
 * (never more than `target`). A `maxValue` of 0 or less (or not finite)
 * gives the axis 0..1.
 *
 * @example niceTicks(87) // { step: 20, max: 100, ticks: [0, 20, 40, 60, 80, 100], decimals: 0 }
 * @example niceTicks(0.42) // { step: 0.1, max: 0.5, ticks: [0, 0.1, 0.2, 0.3, 0.4, 0.5], decimals: 1 }
 */
export function niceTicks(maxValue: number, target = 5): NiceTicks {
  const top = Number.isFinite(maxValue) && maxValue > 0 ? maxValue : 1;
  const step = niceStep(top / target);
  const decimals = decimalsOf(step);
  const count = Math.ceil(Number((top / step).toFixed(9)));
  const ticks = Array.from({ length: count + 1 }, (_, i) => Number((i * step).toFixed(decimals)));
  return { step, max: ticks[ticks.length - 1]!, ticks, decimals };
}

/** The smallest 1, 2, 2.5 or 5 x 10^k that is >= `raw`. */
function niceStep(raw: number): number {
  const exponent = Math.floor(Math.log10(raw));
  const power = 10 ** exponent;
  const fraction = Number((raw / power).toFixed(9));
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5 : 10;
  return Number((nice * power).toPrecision(12));
}

function decimalsOf(step: number): number {
  for (let d = 0; d < 12; d++) {
    const scaled = step * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-9 * Math.max(1, scaled)) return d;
  }
  return 12;
}
