import type { Progress } from './runner.ts';

/**
 * Progress of `sfmirror backfill run`: a bar redrawn in place on a terminal, plain lines otherwise
 * (logs, CI). Days are the unit of the bar and of the ETA; rows and rate are counted as they land.
 */
export function createProgressPrinter(out: NodeJS.WriteStream, now: () => number = Date.now) {
  const tty = out.isTTY === true;
  let lastLine = 0;
  return (p: Progress) => {
    const elapsed = Math.max(1, now() - p.startedAt) / 1000;
    const rate = p.rows / elapsed;
    const share = p.daysTotal > 0 ? Math.min(1, p.daysDone / p.daysTotal) : 1;
    const eta = share > 0 && share < 1 ? Math.round((elapsed / share) * (1 - share)) : 0;
    const text = `job ${p.job.id} ${p.job.org}.${p.job.object}: day ${p.day} (${p.daysDone}/${p.daysTotal}), ${p.rows} rows, ${rate.toFixed(0)} rows/s${eta ? `, ETA ${formatSeconds(eta)}` : ''}`;
    if (tty) {
      const width = 24;
      const filled = Math.round(share * width);
      out.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.round(share * 100)}% ${text}\u001b[K`);
    } else if (now() - lastLine >= 5000 || share === 1) {
      lastLine = now();
      out.write(`${text}\n`);
    }
  };
}

const formatSeconds = (s: number) =>
  s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`;
