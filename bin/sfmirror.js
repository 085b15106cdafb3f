#!/usr/bin/env -S node --max-semi-space-size=4 --max-old-space-size=512 --initial-old-space-size=128
// Entry point for `npx sfmirror` from a checkout. Node 24 runs the TypeScript sources directly; an
// older Node would fail on the first `.ts` import with a stack trace, so say what to do instead.
// The flags keep V8's heap small (a small young generation; the old one starts at 128 MB and may
// grow to 512 MB), which keeps `sfmirror serve` under 300 MB RSS at 16 connections (README,
// "Operations" and "Benchmarks"); `npm start` and the Dockerfile pass the same flags.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `sfmirror needs Node.js 24 or later; this is Node ${process.versions.node} (${process.execPath}).\n` +
      'From a checkout, run it through npm, which uses the Node 24 the project installs: npx sfmirror ... (or npm start).\n',
  );
  process.exit(2);
}
await import('../src/bin/sfmirror.ts');
