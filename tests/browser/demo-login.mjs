// Logs in through `portcullis demo` in a real browser: Debian's Chromium
// (/usr/bin/chromium, or $CHROMIUM) driven by playwright-core, headless.
//
//   DEMO_URL=https://localhost:PORT SCREENSHOTS=dir node tests/browser/demo-login.mjs
//
// Opens the demo, fills the development provider's login form, waits for
// the echo page, then signs out and waits for the signed-out page. Saves
// login.png, echo.png and signed-out.png in SCREENSHOTS. Prints
// {"identity": ..., "title": ..., "claims": {...}, "signed_out": ...} on
// stdout; exits 1 with the reason on failure.

import { chromium } from 'playwright-core';

const url = process.env.DEMO_URL;
const screenshots = process.env.SCREENSHOTS ?? '.';
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  // The demo's certificate is self-signed, as a user would accept it for localhost.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(`${url}/hello?from=chromium`);
  await page.waitForSelector('input[name="login"]', { timeout: 15000 });
  await page.screenshot({ path: `${screenshots}/login.png`, fullPage: true });
  await page.fill('input[name="login"]', 'alice');
  await page.fill('input[name="password"]', 'demo');
  await Promise.all([
    page.waitForSelector('#identity', { timeout: 15000 }),
    page.click('button[type="submit"]'),
  ]);
  const identity = await page.textContent('#identity');
  const claims = await page.$$eval('#claims tr', (rows) =>
    Object.fromEntries(rows.map((row) => [row.querySelector('th').textContent, row.querySelector('td').textContent])));
  const title = await page.title();
  const echoUrl = page.url();
  await page.screenshot({ path: `${screenshots}/echo.png`, fullPage: true });
  await Promise.all([
    page.waitForURL('**/signed-out', { timeout: 15000 }),
    page.click('text=Sign out'),
  ]);
  const signedOut = await page.textContent('body');
  await page.screenshot({ path: `${screenshots}/signed-out.png`, fullPage: true });
  console.log(JSON.stringify({ identity, title, url: echoUrl, claims, signed_out: signedOut }));
} catch (error) {
  console.error(`${error.name}: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
