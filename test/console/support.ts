import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A real browser for the console tests: Debian's Chromium driven by playwright-core (no browser
 * download). Tests are skipped, saying so, when /usr/bin/chromium is not installed.
 */
export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = () => fs.existsSync(CHROMIUM);

/** Where the screenshots of a run go (look at them: README's "Console" shows one). */
export const SHOTS = process.env.SFMIRROR_SCREENSHOT_DIR ?? path.join(os.tmpdir(), 'sfmirror-console-shots');

export async function launchChromium(t: { teardown(fn: () => unknown): void }) {
  const { chromium } = await import('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sfmirror-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
    viewport: { width: 1280, height: 900 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(20_000);
  t.teardown(async () => {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  });
  fs.mkdirSync(SHOTS, { recursive: true });
  return context;
}
