// Small inline SVG charts, drawn here (no chart library, nothing fetched).
import type { Point } from './model';

const WIDTH = 280;
const HEIGHT = 64;
const PAD = 4;

/** A step line of queue length over time, with its peak and the current value. */
export function StepChart({ points, label, timeZone }: { points: Point[]; label: string; timeZone: string }) {
  if (points.length === 0) {
    return (
      <figure className="chart">
        <figcaption>{label}: no tickets yet</figcaption>
      </figure>
    );
  }
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 60_000);
  const max = Math.max(1, ...points.map((p) => p.value));
  const x = (t: number) => PAD + ((t - t0) / (t1 - t0)) * (WIDTH - 2 * PAD);
  const y = (v: number) => HEIGHT - PAD - (v / max) * (HEIGHT - 2 * PAD);
  let path = `M ${x(points[0].t)} ${y(points[0].value)}`;
  for (let i = 1; i < points.length; i += 1) {
    path += ` H ${x(points[i].t)} V ${y(points[i].value)}`;
  }
  const clock = new Intl.DateTimeFormat(undefined, { timeZone, hour: '2-digit', minute: '2-digit' });
  const current = points[points.length - 1].value;
  return (
    <figure className="chart">
      <figcaption>
        {label}: <strong>{current}</strong> in queue (peak {max})
      </figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`queue length of ${label}`}>
        <line x1={PAD} x2={WIDTH - PAD} y1={HEIGHT - PAD} y2={HEIGHT - PAD} className="axis" />
        <path d={path} className="line" />
      </svg>
      <div className="chart-range">
        <span>{clock.format(t0)}</span>
        <span>{clock.format(t1)}</span>
      </div>
    </figure>
  );
}

/** Bars: one per minute, newest on the right. */
export function BarChart({ bins, label }: { bins: number[]; label: string }) {
  const max = Math.max(1, ...bins);
  const barWidth = (WIDTH - 2 * PAD) / bins.length;
  const total = bins.reduce((a, b) => a + b, 0);
  return (
    <figure className="chart">
      <figcaption>
        {label}: <strong>{bins[bins.length - 1] ?? 0}</strong>/min now, {total} in {bins.length} min
      </figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`events per minute of ${label}`}>
        <line x1={PAD} x2={WIDTH - PAD} y1={HEIGHT - PAD} y2={HEIGHT - PAD} className="axis" />
        {bins.map((count, i) => {
          const h = (count / max) * (HEIGHT - 2 * PAD);
          return (
            <rect
              key={i}
              className="bar"
              x={PAD + i * barWidth + 0.5}
              y={HEIGHT - PAD - h}
              width={Math.max(1, barWidth - 1)}
              height={h}
            />
          );
        })}
      </svg>
    </figure>
  );
}
