#!/usr/bin/env -S node --max-semi-space-size=4
// Entry point for `npx sfmirror` from a checkout. Node 24 runs the TypeScript sources directly.
// The flag keeps V8's young generation small, which keeps `sfmirror serve` under 300 MB RSS at 16
// connections (README, "Benchmarks"); `npm start` and the Dockerfile pass the same flag.
import '../src/bin/sfmirror.ts';
