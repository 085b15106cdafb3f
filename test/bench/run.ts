import { runBackfillBench } from './backfill.bench.ts';
import { runIngestBench } from './ingest.bench.ts';
import { runReadBench } from './read.bench.ts';
import { runStreamBench } from './stream.bench.ts';
import { runWarehouseBench } from './warehouse.bench.ts';

// `npm run bench [ingest|stream|read|backfill|warehouse]`: performance figures next to the ceiling measured in the same
// run; every benchmark when none is named. Not part of `npm test` (timed assertions are flaky on
// shared machines).
const benches: Record<string, { title: string; run: () => Promise<string> }> = {
  ingest: { title: 'Ingest: signed 200-record pushes -> committed mirror rows', run: runIngestBench },
  stream: { title: 'CDC stream: change events over CometD -> committed mirror rows', run: runStreamBench },
  read: { title: 'Read API: GET by id, list page, change-feed page', run: runReadBench },
  backfill: { title: 'Backfill: Bulk API 2.0 CSV from the stand-in -> committed mirror rows', run: runBackfillBench },
  warehouse: { title: 'Warehouse: outbox drained into the BigQuery stand-in during sustained ingest', run: runWarehouseBench },
};
const names = process.argv.slice(2);
for (const name of names.length ? names : Object.keys(benches)) {
  const bench = benches[name];
  if (!bench) {
    console.error(`unknown benchmark ${name}; known: ${Object.keys(benches).join(', ')}`);
    process.exitCode = 2;
    break;
  }
  console.log(`## ${bench.title}\n`);
  console.log(await bench.run());
  console.log('');
}
