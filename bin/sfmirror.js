#!/usr/bin/env node
// Entry point for `npx sfmirror` from a checkout. Node 24 runs the TypeScript sources directly.
import '../src/bin/sfmirror.ts';
