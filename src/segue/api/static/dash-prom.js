// The Prometheus text format, as much as the dashboard needs: one histogram's buckets per
// label value, summed over the other labels, and quantiles estimated from them the way
// PromQL's histogram_quantile does (linear within a bucket).

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function labels(text) {
  const out = {};
  for (const match of (text || "").matchAll(LABEL)) {
    out[match[1]] = match[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  }
  return out;
}

function number(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

/**
 * The histogram `name` grouped by the label `by`: Map(value → {buckets: [[le, cumulative
 * count], …] sorted by le, count, sum}).
 */
export function histograms(text, name, by) {
  const groups = new Map();
  const group = (key) => {
    if (!groups.has(key)) groups.set(key, { les: new Map(), count: 0, sum: 0 });
    return groups.get(key);
  };
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match || !match[1].startsWith(name)) continue;
    const suffix = match[1].slice(name.length);
    const tags = labels(match[2]);
    const value = number(match[3]);
    const entry = group(tags[by] ?? "");
    if (suffix === "_bucket") {
      const le = number(tags.le);
      entry.les.set(le, (entry.les.get(le) || 0) + value);
    } else if (suffix === "_count") entry.count += value;
    else if (suffix === "_sum") entry.sum += value;
  }
  const out = new Map();
  for (const [key, entry] of groups) {
    const buckets = [...entry.les.entries()].sort((a, b) => a[0] - b[0]);
    out.set(key, { buckets, count: entry.count, sum: entry.sum });
  }
  return out;
}

/** `later` minus `earlier`, bucket by bucket (what happened between two scrapes). */
export function difference(later, earlier) {
  if (!earlier) return later;
  const before = new Map(earlier.buckets);
  return {
    buckets: later.buckets.map(([le, n]) => [le, n - (before.get(le) || 0)]),
    count: later.count - earlier.count,
    sum: later.sum - earlier.sum,
  };
}

/** The q-quantile (0 < q < 1) of a histogram, in the buckets' unit; NaN when empty. */
export function quantile(histogram, q) {
  const buckets = histogram.buckets;
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return NaN;
  const rank = q * total;
  let previousLe = 0;
  let previousCount = 0;
  for (const [le, cumulative] of buckets) {
    if (cumulative >= rank) {
      if (le === Infinity) return previousLe;
      const inBucket = cumulative - previousCount;
      const share = inBucket ? (rank - previousCount) / inBucket : 0;
      return previousLe + (le - previousLe) * share;
    }
    previousLe = le;
    previousCount = cumulative;
  }
  return previousLe;
}

/** Per-bucket (not cumulative) counts with readable bounds, for a bar chart. */
export function bars(histogram, formatLe) {
  let previous = 0;
  return histogram.buckets.map(([le, cumulative]) => {
    const value = cumulative - previous;
    previous = cumulative;
    const label = le === Infinity ? "more" : `≤${formatLe(le)}`;
    return { label, value, title: `${label}: ${value} requests` };
  });
}
