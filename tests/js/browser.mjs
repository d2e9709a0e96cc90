// The headless-browser end-to-end check of the dev page (tests/e2e/test_browser.py):
// Chromium, driven by playwright-core, opens the page served by `python -m provider dev`
// twice (two tabs = two WebSocket sessions), sends a message and sees the echo on its own
// session, sends a broadcast and sees it on both pages, and subscribes to a topic.
//
//   node browser.mjs URL SCREENSHOT_PATH
//
// Prints one JSON line on stdout: {"ok":true,...what it saw...} and exits 0, or
// {"ok":false,"error":"...","step":"..."} and exits 1. Chromium is the system one
// (CHROMIUM env var, default /usr/bin/chromium); no browser is ever downloaded.

import { chromium } from "playwright-core";

const [url, screenshotPath] = process.argv.slice(2);
const EXECUTABLE = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = Number(process.env.BROWSER_STEP_TIMEOUT_MS || 15000); // per wait
const SESSION_ID = /^ws_[A-Za-z0-9_-]{22}$/;
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let step = "start";
const timings = {};
const t0 = Date.now();
const mark = (name) => {
  timings[name] = Date.now() - t0;
};

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const exactly = (text) => new RegExp(`^${escapeRegExp(text)}$`);

/** Waits for a #log entry (optionally of class `cls`) whose whole text is `text`. */
async function waitForLog(page, text, cls) {
  const selector = cls ? `#log li.${cls}` : "#log li";
  await page.locator(selector).filter({ hasText: exactly(text) }).first().waitFor({
    timeout: TIMEOUT,
  });
}

/** Waits until the page is connected and has its session id; returns the id. */
async function waitForSession(page) {
  await page.locator("#status.open").filter({ hasText: exactly("connected") }).waitFor({
    timeout: TIMEOUT,
  });
  const session = page.locator("#session").filter({ hasText: SESSION_ID });
  await session.waitFor({ timeout: TIMEOUT });
  return (await session.textContent()).trim();
}

// Only the front tab gets animation frames promptly: acting on a background tab makes each
// Playwright actionability check (which waits for the element to be stable over two frames)
// take about two seconds. So a page is brought to the front before it is used.
async function send(page, text, { broadcast = false } = {}) {
  await page.bringToFront();
  await page.locator("#body").fill(text);
  await page.locator("#broadcast").setChecked(broadcast);
  await page.locator("#send").click();
}

async function logTexts(page) {
  return page.locator("#log li").allTextContents();
}

async function main() {
  if (!url || !screenshotPath) {
    throw new Error("usage: node browser.mjs URL SCREENSHOT_PATH");
  }
  let browser;
  try {
    step = "launch chromium";
    // launch() runs Chromium on a fresh temporary --user-data-dir and removes it on close.
    browser = await chromium.launch({
      executablePath: EXECUTABLE,
      headless: true,
      args: FLAGS,
      timeout: 30000,
    });
    mark("chromium_started_ms");
    const browserVersion = browser.version();
    const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    const pageErrors = [];
    const consoleErrors = [];
    const httpErrors = [];
    const watch = (page, name) => {
      page.on("response", (r) => {
        if (r.status() >= 400) httpErrors.push(`${name}: ${r.status()} ${r.url()}`);
      });
      page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
      page.on("console", (msg) => {
        if (msg.type() === "error") consoleErrors.push(`${name}: ${msg.text()}`);
      });
    };

    step = "open the pages";
    const page1 = await context.newPage();
    const page2 = await context.newPage();
    watch(page1, "page1");
    watch(page2, "page2");
    const title = (await page1.goto(url, { timeout: TIMEOUT }), await page1.title());
    await page2.goto(url, { timeout: TIMEOUT });

    step = "wait for the sessions";
    const [session1, session2] = await Promise.all([waitForSession(page1), waitForSession(page2)]);
    mark("connected_ms");
    if (session1 === session2) throw new Error(`both pages got session ${session1}`);
    await waitForLog(page1, `welcome: session ${session1}`);
    await waitForLog(page2, `welcome: session ${session2}`);

    step = "echo";
    const subject = (await page1.locator("#subject").inputValue()).trim();
    const echoText = `hello from page 1, ${Date.now()}`;
    await send(page1, echoText);
    await waitForLog(page1, `→ ${subject}: ${echoText}`, "out");
    const echoLine = `← ${session1}: ${echoText}`;
    await waitForLog(page1, echoLine, "in");
    mark("echo_ms");

    step = "broadcast";
    const broadcastText = `to everyone, ${Date.now()}`;
    await send(page1, broadcastText, { broadcast: true });
    await waitForLog(page1, `→ ${subject}: broadcast: ${broadcastText}`, "out");
    const broadcastLine = `← broadcast: ${broadcastText}`;
    await Promise.all([
      waitForLog(page1, broadcastLine, "broadcast"),
      waitForLog(page2, broadcastLine, "broadcast"),
    ]);
    mark("broadcast_ms");

    step = "subscribe";
    const topic = "news.e2e.>";
    await page2.bringToFront();
    await page2.locator("#topic").fill(topic);
    await page2.locator("#subscribe").click();
    await page2.locator("#topics li code").filter({ hasText: exactly(topic) }).waitFor({
      timeout: TIMEOUT,
    });
    const topics = await page2.locator("#topics li code").allTextContents();
    mark("subscribed_ms");

    const log2BeforeReload = await logTexts(page2);

    step = "reload resumes the session";
    // A reload closes the WebSocket (1001) and the new page presents the resume token kept
    // in sessionStorage: same session id; the broadcast it missed meanwhile is replayed.
    await page2.bringToFront();
    await page2.reload({ timeout: TIMEOUT });
    const resumedSession = await waitForSession(page2);
    if (resumedSession !== session2) {
      throw new Error(`reload gave session ${resumedSession}, not ${session2}`);
    }
    await waitForLog(page2, `resumed: session ${session2} (recovered)`);
    // The page's topic list comes back too (the session kept its subscriptions).
    await page2.locator("#topics li code").filter({ hasText: exactly(topic) }).waitFor({
      timeout: TIMEOUT,
    });
    const topicsAfterReload = await page2.locator("#topics li code").allTextContents();
    const afterReload = `after the reload, ${Date.now()}`;
    await send(page1, afterReload, { broadcast: true });
    await waitForLog(page2, `← broadcast: ${afterReload}`, "broadcast");
    mark("resumed_ms");

    step = "final checks";
    const log1 = await logTexts(page1);
    const log2 = await logTexts(page2);
    const errors = [
      ...(await page1.locator("#log li.error").allTextContents()).map((e) => `page1: ${e}`),
      ...(await page2.locator("#log li.error").allTextContents()).map((e) => `page2: ${e}`),
    ];
    if (errors.length) throw new Error(`error frames on the page: ${errors.join("; ")}`);
    if (log2BeforeReload.includes(echoLine)) throw new Error("page 2 received page 1's echo");
    if (pageErrors.length) throw new Error(`JavaScript errors: ${pageErrors.join("; ")}`);

    step = "screenshot";
    await page1.bringToFront();
    await page1.screenshot({ path: screenshotPath, fullPage: true, timeout: TIMEOUT });
    mark("screenshot_ms");

    console.log(
      JSON.stringify({
        ok: true,
        browser: browserVersion,
        title,
        sessions: [session1, session2],
        subject,
        echo: { sent: echoText, seen: echoLine },
        broadcast: { sent: broadcastText, seen: broadcastLine },
        topics,
        topics_after_reload: topicsAfterReload,
        resumed: resumedSession,
        logs: { page1: log1, page2: log2BeforeReload, page2_after_reload: log2 },
        console_errors: consoleErrors,
        http_errors: httpErrors,
        screenshot: screenshotPath,
        timings,
      }),
    );
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
}

try {
  await main();
  process.exit(0);
} catch (err) {
  console.log(JSON.stringify({ ok: false, step, error: String(err?.stack || err), timings }));
  process.exit(1);
}
