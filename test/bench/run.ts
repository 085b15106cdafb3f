import { runIngestBench } from './ingest.bench.ts';

// `npm run bench`: performance figures next to the ceiling measured in the same run.
// Not part of `npm test` (timed assertions are flaky on shared machines).
const which = process.argv[2] ?? 'ingest';
if (which === 'ingest') {
  console.log('## Ingest: signed 200-record pushes -> committed mirror rows\n');
  console.log(await runIngestBench());
} else {
  console.error(`unknown benchmark ${which}; known: ingest`);
  process.exitCode = 2;
}
