import { filterChanges, filterTypes, type FieldFilter } from '../changes/field-filter.ts';
import type { Logger } from '../lib/logger.ts';
import type { Mirror } from '../mirror/apply.ts';
import type { FormulaTracker } from './tracker.ts';

/**
 * The mirror every source writes through in `serve` (pushes, CDC, backfills): `mirror.apply` as a
 * client, with two small steps around it.
 * - Before: fields the operator excluded (SFMIRROR_FIELDS / SFMIRROR_EXCLUDE_FIELDS) are dropped
 *   from the changes and the push's types map, so they never reach a mirror row, `_sfm_fields`, the
 *   outbox or BigQuery, whatever path they came by.
 * - After the commit: the applied changes are handed to the formula tracker, which queues the
 *   re-reads they call for. A failure there is logged, never failing the batch the source already
 *   committed; what it missed the periodic refresh and the daily reconciliation repair.
 * The formula re-reader applies through the inner mirror, so its own writes queue nothing.
 */
export function createFilteredMirror(
  inner: Mirror,
  d: { filter: FieldFilter; tracker?: FormulaTracker | undefined; log?: Logger | undefined },
): Mirror {
  return {
    ...inner,
    async apply(org, changes, opts = {}) {
      const kept = filterChanges(d.filter, changes);
      const result = await inner.apply(org, kept, d.filter.active ? { ...opts, types: filterTypes(d.filter, opts.types) } : opts);
      if (d.tracker && result.applied > 0) {
        await d.tracker
          .noteApplied(org, kept, result.outcomes)
          .catch((e: Error) => d.log?.warn({ org, err: e.message }, 'formula re-reads could not be queued for this batch'));
      }
      return result;
    },
  };
}
