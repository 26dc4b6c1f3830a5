// The kilnd dashboard in Debian's headless Chromium, driven by Playwright
// (scripts/e2e.sh runs it against its devnet):
//   node dashboard.mjs DASHBOARD_URL HOST_ADDRESS KILN_BIN NODE_RPC SCREENSHOT_DIR
// - the page loads without console errors or uncaught exceptions;
// - the host's weight on the page equals `kiln query weights` at the height
//   the page shows;
// - the page updates when a block commits (over its websocket, no reload);
// - screenshots are saved in SCREENSHOT_DIR.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, host, kiln, rpc, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: node dashboard.mjs DASHBOARD_URL HOST_ADDRESS KILN_BIN NODE_RPC SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const fail = (msg) => { console.error(`dashboard test FAILED: ${msg}`); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // This machine's network is closed: keep Chromium from calling home.
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // Containers often give /dev/shm a few MB only.
    "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`uncaught: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

  const response = await page.goto(url, { waitUntil: "load" });
  if (!response || response.status() !== 200) fail(`GET ${url}: HTTP ${response?.status()}`);
  const row = `#hosts tbody tr[data-host="${host}"]`;
  await page.waitForSelector(row, { timeout: 30000 }).catch(() => fail(`no row for ${host} in the hosts table`));
  await page.waitForFunction(() => document.getElementById("live").textContent === "live", null, { timeout: 15000 })
    .catch(() => fail("the websocket never connected (badge not 'live')"));

  // The page's weight at the height it shows = the CLI's at that height.
  const seen = await page.evaluate((sel) => ({
    height: Number(document.body.dataset.height),
    weight: Number(document.querySelector(`${sel} td.weight`).dataset.weight),
    shown: document.querySelector(`${sel} td.weight`).textContent,
  }), row);
  const cli = JSON.parse(execFileSync(kiln, ["query", "weights", "--node", rpc, "--height", String(seen.height), "--output", "json"]));
  const mine = cli.weights.find((w) => w.host === host);
  const cliWeight = mine ? Number(mine.weight) : 0;
  if (seen.weight !== cliWeight) fail(`the page shows weight ${seen.weight} at height ${seen.height}; kiln query weights says ${cliWeight}`);
  if (!(seen.weight > 0)) fail(`the host has no weight on the page: ${JSON.stringify(seen)}`);
  console.log(`page: ${host.slice(0, 14)}… weight ${seen.shown} at height ${seen.height} = kiln query weights (${cliWeight})`);
  await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });

  // A block commits: the page moves on by itself.
  await page.waitForFunction((h) => Number(document.body.dataset.height) > h, seen.height, { timeout: 30000 })
    .catch(() => fail(`the page stayed at height ${seen.height}`));
  const later = await page.evaluate(() => Number(document.body.dataset.height));
  console.log(`page: updated to height ${later} without a reload`);
  const plotted = await page.evaluate(() => document.querySelectorAll("#weight-plot path").length);
  if (plotted < 1) fail("the weight plot has no line");
  await page.screenshot({ path: join(shots, "dashboard-updated.png"), fullPage: true });

  if (problems.length) fail(problems.join("; "));
  console.log(`page: no console errors; screenshots in ${shots}`);
} finally {
  await browser.close();
}
