// Small inline SVG line charts for the console (no chart service, nothing fetched from elsewhere).
const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

const fmt = (v) => (v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, '') || '0');

/**
 * Draws `values` (one per sample, null for unknown) over the last hour into `host`, replacing what
 * was there. `label` names the chart for screen readers, with the latest value.
 */
export function lineChart(host, points, pick, label) {
  const W = 300;
  const H = 100;
  const values = points.map(pick);
  const known = values.filter((v) => v !== null && v !== undefined);
  const max = Math.max(1, ...known);
  const last = known.length ? known[known.length - 1] : null;
  const svg = el('svg', {
    class: 'chart',
    viewBox: `0 0 ${W} ${H}`,
    preserveAspectRatio: 'none',
    role: 'img',
    'aria-label': `${label}: ${last === null ? 'no data yet' : `now ${fmt(last)}, highest ${fmt(Math.max(...known))}`}`,
  });
  const n = values.length;
  const x = (i) => (n <= 1 ? W : (i / (n - 1)) * W);
  const y = (v) => H - 4 - (v / max) * (H - 18);
  const coords = [];
  values.forEach((v, i) => {
    if (v !== null && v !== undefined) coords.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  if (coords.length) {
    const first = coords[0].split(',')[0];
    const lastX = coords[coords.length - 1].split(',')[0];
    svg.append(el('polygon', { class: 'area', points: `${first},${H} ${coords.join(' ')} ${lastX},${H}` }));
    svg.append(
      el('polyline', { class: 'line', points: coords.length === 1 ? `0,${coords[0].split(',')[1]} ${coords[0]}` : coords.join(' ') }),
    );
  }
  const svgWrap = document.createElement('div');
  svgWrap.append(svg);
  const legend = document.createElement('div');
  legend.className = 'muted';
  legend.textContent = last === null ? 'no data yet' : `now ${fmt(last)} · max ${fmt(max)} · ${points.length} samples`;
  host.replaceChildren(svgWrap, legend);
}
