// The web dashboard in a real browser: headless Chromium (Debian's `chromium` package) driven by
// playwright-core, against the real `flo` binary (path in FLO_BIN) started on free loopback
// ports with a temporary data directory. Data is seeded through the HTTP API; each screen is
// loaded, its main actions are clicked, what the page shows is asserted (and cross-checked
// through the API), and screenshots are saved in target/browser-artifacts/ (or
// FLO_BROWSER_ARTIFACTS).
//
// Run with scripts/browser-test, which installs what is missing and builds the binary.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");
const FLO_BIN = process.env.FLO_BIN || path.join(repo, "target", "debug", "flo");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = process.env.FLO_BROWSER_ARTIFACTS || path.join(repo, "target", "browser-artifacts");
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const WAIT_MS = 10_000;

fs.mkdirSync(ARTIFACTS, { recursive: true });

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts `flo server start` and waits for /health; retries with new ports if one was taken. */
async function startServer({ auth = false, tokens = "" } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flo-dash-"));
  const config = path.join(dir, "flo.toml");
  // Small log segments: a start does not zero-fill 64 MiB per shard.
  fs.writeFileSync(config, "[log]\nsegment_bytes = 8388608\nbatch_max_bytes = 2097152\n");
  let lastErr = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const metricsPort = await freePort();
    if (port === metricsPort) continue;
    const args = ["server", "start", "--config", config, "--data-dir", path.join(dir, "data"),
                  "--bind", "127.0.0.1", "--dashboard-port", String(port), "--metrics-port", String(metricsPort),
                  "--shards", "2"];
    if (auth) args.push("--auth");
    const env = { ...process.env, FLO_LOG: "warn" };
    delete env.FLO_AUTH_TOKENS;
    delete env.FLO_CONFIG;
    if (tokens) env.FLO_AUTH_TOKENS = tokens;
    const child = spawn(FLO_BIN, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => { stderr = (stderr + d).slice(-4000); });
    let exited = null;
    child.on("exit", (code, sig) => { exited = `exit ${code ?? sig}`; });
    child.on("error", (e) => { exited = `spawn failed: ${e.message}`; });
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && exited === null) {
      try {
        const r = await fetch(base + "/health");
        if (r.status === 200) {
          return { base, child, dir, stderr: () => stderr };
        }
      } catch (_) { /* not listening yet */ }
      await sleep(100);
    }
    lastErr = exited ? `${exited}: ${stderr}` : "not healthy within 30 s";
    if (exited === null) child.kill("SIGKILL");
  }
  throw new Error(`flo did not start (${FLO_BIN}): ${lastErr}`);
}

async function stopServer(server) {
  if (!server) return;
  if (server.child.exitCode === null && server.child.signalCode === null) {
    const done = new Promise((r) => server.child.once("exit", r));
    server.child.kill("SIGTERM");
    const t = setTimeout(() => server.child.kill("SIGKILL"), 10_000);
    await done;
    clearTimeout(t);
  }
  fs.rmSync(server.dir, { recursive: true, force: true });
}

/** A JSON call to the API. */
async function call(server, method, p, body, token) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (typeof body === "string") { payload = body; headers["Content-Type"] = "text/plain"; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  const r = await fetch(server.base + p, { method, headers, body: payload });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null, headers: r.headers };
}
async function ok(server, method, p, body) {
  const r = await call(server, method, p, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${p} answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json;
}
const b64 = (s) => Buffer.from(s).toString("base64");

/** Puts data in every primitive: what the screens are then expected to show. */
async function seed(server) {
  await ok(server, "PUT", "/api/v1/kv/default/user%3A1", { value: b64("alice") });
  await ok(server, "PUT", "/api/v1/kv/default/user%3A2", { value: b64("bob"), ttl_seconds: 3600 });
  await ok(server, "PUT", "/api/v1/kv/default/user%3A2", { value: b64("bob"), ttl_seconds: 3600 });
  await ok(server, "PUT", "/api/v1/kv/default/bin%3A1", { value: Buffer.from([0, 1, 2, 255]).toString("base64") });
  await ok(server, "PUT", "/api/v1/kv/default/other", { value: b64("x") });
  await ok(server, "PUT", "/api/v1/kv/app/app-key", { value: b64("in app") });

  for (const p of ["job-1", "job-2", "job-3"]) {
    await ok(server, "POST", "/api/v1/queue/default/tasks/enqueue", { payload: b64(p) });
  }
  await ok(server, "POST", "/api/v1/queue/default/tasks/enqueue", { payload: b64("later"), delay_ms: 3_600_000 });
  const d = await ok(server, "POST", "/api/v1/queue/default/tasks/dequeue", { count: 1 });
  assert.equal(Buffer.from(d.messages[0].payload, "base64").toString(), "job-1");
  await ok(server, "POST", "/api/v1/queue/default/tasks/nack", { sequences: [d.messages[0].seq], to_dlq: true });

  const records = Array.from({ length: 30 }, (_, i) => ({ payload: b64(`event-${i}`) }));
  await ok(server, "POST", "/api/v1/stream/default/events/append", { records });
  await ok(server, "POST", "/api/v1/stream/default/events/groups/processors", { start: "earliest" });
  const g = await ok(server, "POST", "/api/v1/stream/default/events/groups/processors/read", { consumer: "w1", count: 5 });
  assert.equal(g.records.length, 5);

  const now = Date.now();
  const lines = [];
  for (let i = 0; i < 20; i++) {
    const t = now - (20 - i) * 15_000;
    lines.push(`cpu,host=web-01 usage=${50 + i} ${t}`);
    lines.push(`cpu,host=web-02 usage=${20 + (i % 5)} ${t}`);
    lines.push(`memory,host=web-01 used=${4096 + i},total=8192 ${t}`);
  }
  const w = await ok(server, "POST", "/api/v1/ts/default/write?precision=ms", lines.join("\n"));
  assert.equal(w.points_written, 60);
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

/** A fresh Chromium profile; every request the page makes is recorded. */
async function openBrowser(server) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "flo-dash-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1360, height: 900 },
  });
  const page = context.pages()[0] || await context.newPage();
  const requests = [];
  const failed = []; // "STATUS METHOD path" of every answer that was not 2xx
  const errors = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("response", (r) => {
    if (r.status() >= 300) failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
  });
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  page.on("dialog", (d) => d.accept());
  const close = async () => {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { page, requests, failed, errors, close };
}

/** Loads the page afresh at a screen (a reload even when only the hash would change). */
async function visit(page, base, hash) {
  await page.goto("about:blank");
  await page.goto(`${base}/${hash ? "#" + hash : ""}`);
}

/** Waits until the locator's text matches (a string means equality), else fails showing it. */
async function expectText(locator, want, what) {
  const deadline = Date.now() + WAIT_MS;
  let got = null;
  for (;;) {
    try {
      got = (await locator.textContent({ timeout: 1000 }))?.trim() ?? null;
    } catch (_) { got = null; }
    const good = got !== null && (typeof want === "string" ? got === want : want.test(got));
    if (good) return got;
    if (Date.now() > deadline) assert.fail(`${what}: expected ${want}, page shows ${JSON.stringify(got)}`);
    await sleep(100);
  }
}
/** Waits until the locator matches `n` elements. */
async function expectCount(locator, n, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const got = await locator.count();
    if (got === n) return;
    if (Date.now() > deadline) assert.fail(`${what}: expected ${n}, page has ${got}`);
    await sleep(100);
  }
}
async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
}
async function cellTexts(page, sel) {
  return page.locator(sel).allTextContents().then((a) => a.map((s) => s.trim()));
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

let server;
let browser;

before(async () => {
  assert.ok(fs.existsSync(FLO_BIN), `no flo binary at ${FLO_BIN} (set FLO_BIN or run cargo build)`);
  assert.ok(fs.existsSync(CHROMIUM), `no chromium at ${CHROMIUM}`);
  server = await startServer();
  await seed(server);
  browser = await openBrowser(server);
});

after(async () => {
  if (browser) await browser.close();
  await stopServer(server);
});

test("GET / serves the page: HTML, public, not cached stale, nothing external allowed", async () => {
  const r = await fetch(server.base + "/");
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(r.headers.get("cache-control"), "no-cache");
  assert.match(r.headers.get("content-security-policy"), /default-src 'none'.*connect-src 'self'/);
  const body = await r.text();
  assert.match(body, /^<!doctype html>/);
  assert.equal(Number(r.headers.get("content-length")), Buffer.byteLength(body));
  const head = await fetch(server.base + "/", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), r.headers.get("content-length"));
  assert.equal((await head.text()).length, 0);
  const post = await fetch(server.base + "/", { method: "POST" });
  assert.equal(post.status, 405);
});

test("overview: status, shards, ops/s sparkline, connections, memory", async () => {
  const { page } = browser;
  await visit(page, server.base, "");
  await expectText(page.locator("#ov-status"), "healthy", "status");
  await expectText(page.locator("#ov-shards"), "2", "shard count");
  await expectCount(page.locator("#ov-shard-table tbody tr"), 2, "shard rows");
  const status = await ok(server, "GET", "/api/v1/status");
  await expectText(page.locator("#ov-version"), status.version, "version");
  await expectText(page.locator("#ov-mem"), /^\d+(\.\d)? (KiB|MiB|GiB)$/, "memory");
  await expectText(page.locator("#ov-conns"), /^[1-9]\d*$/, "active connections (the page's own)");
  await expectText(page.locator("#ov-partitions"), "64", "partitions over all shards");
  // The overview polls every 2 s: the sparkline grows a point per poll.
  await page.waitForFunction(() => Number(document.querySelector("#ov-spark").dataset.points) >= 3,
                             null, { timeout: 15_000 });
  const pts = await page.locator("#ov-spark polyline").getAttribute("points");
  assert.ok(pts.split(" ").length >= 3, `sparkline points: ${pts}`);
  // The seed's operations show in the total.
  const total = Number((await page.locator("#ov-ops-total").textContent()).replace(/,/g, ""));
  assert.ok(total >= 15, `ops total ${total}`);
  await shot(page, "overview.png");
});

test("namespace switcher lists namespaces and scopes the screens", async () => {
  const { page } = browser;
  await visit(page, server.base, "kv");
  await expectCount(page.locator("#kv-keys tbody tr[data-key]"), 4, "keys in default");
  const options = await page.locator("#ns option").allTextContents();
  assert.ok(options.includes("default") && options.includes("app"), `namespaces: ${options}`);
  await page.selectOption("#ns", "app");
  await expectCount(page.locator("#kv-keys tbody tr[data-key]"), 1, "keys in app");
  await expectText(page.locator("#kv-keys tbody tr[data-key] td").first(), "app-key", "app's key");
  await shot(page, "namespace-app.png");
  // A new namespace typed in the header is created and selected.
  await page.fill("#ns-new", "fresh");
  await page.press("#ns-new", "Enter");
  await expectText(page.locator("#kv-keys tbody td.empty"), "no keys in this namespace", "empty namespace");
  assert.equal(await page.locator("#ns").inputValue(), "fresh");
  const nss = await ok(server, "GET", "/api/v1/namespaces");
  assert.ok(nss.namespaces.some((n) => n.name === "fresh"), "fresh was created");
  await page.selectOption("#ns", "default");
  await expectCount(page.locator("#kv-keys tbody tr[data-key]"), 4, "keys in default again");
});

test("KV: browse by prefix, view text and hex with version and TTL, put, delete", async () => {
  const { page } = browser;
  await visit(page, server.base, "kv");
  await expectCount(page.locator("#kv-keys tbody tr[data-key]"), 4, "all keys");
  assert.deepEqual(await cellTexts(page, "#kv-keys tbody tr[data-key] td:first-child"),
                   ["bin:1", "other", "user:1", "user:2"], "keys in byte order");

  await page.fill("#kv-prefix", "user:");
  await page.click("#kv-scan");
  await expectCount(page.locator("#kv-keys tbody tr[data-key]"), 2, "keys with prefix user:");
  assert.deepEqual(await cellTexts(page, "#kv-keys tbody tr[data-key] td:first-child"), ["user:1", "user:2"]);

  await page.click("#kv-keys tr[data-key='user:2'] button");
  await expectText(page.locator("#kv-v-key"), "user:2", "viewed key");
  await expectText(page.locator("#kv-v-value"), "bob", "text value");
  await expectText(page.locator("#kv-v-version"), "2", "version");
  const ttl = await expectText(page.locator("#kv-v-ttl"), /^\d+ s$/, "TTL");
  const secs = parseInt(ttl, 10);
  assert.ok(secs > 3500 && secs <= 3600, `TTL ${ttl}`);
  await page.selectOption("#kv-fmt", "hex");
  await expectText(page.locator("#kv-v-value"), "62 6f 62", "hex of bob");

  await page.fill("#kv-prefix", "");
  await page.click("#kv-scan");
  await page.click("#kv-keys tr[data-key='bin:1'] button");
  await expectText(page.locator("#kv-v-key"), "bin:1", "binary key");
  await expectText(page.locator("#kv-v-value"), "00 01 02 ff", "binary value shown as hex");
  assert.equal(await page.locator("#kv-fmt").inputValue(), "hex", "binary values default to hex");
  await expectText(page.locator("#kv-v-ttl"), "none", "no TTL");

  // Put a new key.
  await page.fill("#kv-put-key", "note:1");
  await page.fill("#kv-put-value", "hello dashboard");
  await page.fill("#kv-put-ttl", "");
  await page.click("#kv-put");
  await expectText(page.locator("#kv-v-key"), "note:1", "the put key is shown");
  await expectText(page.locator("#kv-v-version"), "1", "its version");
  await expectText(page.locator("#kv-v-value"), "hello dashboard", "its value");
  await expectCount(page.locator("#kv-keys tbody tr[data-key='note:1']"), 1, "the key is listed");
  let got = await ok(server, "GET", "/api/v1/kv/default/note%3A1");
  assert.equal(Buffer.from(got.value, "base64").toString(), "hello dashboard");
  // Put again in hex with a TTL: a new version.
  await page.fill("#kv-put-value", "68 69");
  await page.selectOption("#kv-put-fmt", "hex");
  await page.fill("#kv-put-ttl", "120");
  await page.click("#kv-put");
  await expectText(page.locator("#kv-v-version"), "2", "version after the second put");
  await expectText(page.locator("#kv-v-value"), "hi", "hex input stored as bytes");
  await expectText(page.locator("#kv-v-ttl"), /^1[01]\d s$|^120 s$/, "TTL set by the put");
  got = await ok(server, "GET", "/api/v1/kv/default/note%3A1");
  assert.equal(Buffer.from(got.value, "base64").toString(), "hi");
  await shot(page, "kv.png");

  // Delete it.
  await page.click("#kv-delete");
  await expectCount(page.locator("#kv-keys tbody tr[data-key='note:1']"), 0, "deleted key gone from the list");
  assert.equal(await page.locator("#kv-view").isHidden(), true, "value panel closed");
  const gone = await call(server, "GET", "/api/v1/kv/default/note%3A1");
  assert.equal(gone.status, 404);
});

test("queues: counts, peek, enqueue, DLQ requeue", async () => {
  const { page } = browser;
  await visit(page, server.base, "queues");
  const row = page.locator("#q-table tr[data-queue='tasks']");
  await expectText(row.locator("[data-col=ready]"), "2", "ready");
  await expectText(row.locator("[data-col=leased]"), "0", "leased");
  await expectText(row.locator("[data-col=delayed]"), "1", "delayed");
  await expectText(row.locator("[data-col=dlq]"), "1", "DLQ");

  await row.locator("button").click();
  await expectText(page.locator("#q-name"), "tasks", "selected queue");
  await expectCount(page.locator("#q-peek-table tbody tr[data-seq]"), 2, "peeked messages");
  assert.deepEqual(await cellTexts(page, "#q-peek-table tbody td.payload"), ["job-2", "job-3"]);
  await expectCount(page.locator("#q-dlq-table tbody tr[data-seq]"), 1, "dead letters");
  await expectText(page.locator("#q-dlq-table tbody td.payload"), "job-1", "the dead letter");
  await shot(page, "queues.png");

  // Enqueue through the form.
  assert.equal(await page.locator("#q-enq-name").inputValue(), "tasks", "the form follows the selection");
  await page.fill("#q-enq-payload", "job-4");
  await page.click("#q-enq");
  await expectText(row.locator("[data-col=ready]"), "3", "ready after enqueue");
  await expectCount(page.locator("#q-peek-table tbody tr[data-seq]"), 3, "peeked after enqueue");
  assert.deepEqual(await cellTexts(page, "#q-peek-table tbody td.payload"), ["job-2", "job-3", "job-4"]);

  // Requeue the dead letter.
  await page.click("#q-dlq-table tbody tr[data-seq] button.requeue");
  await expectText(row.locator("[data-col=dlq]"), "0", "DLQ after requeue");
  await expectText(row.locator("[data-col=ready]"), "4", "ready after requeue");
  await expectText(page.locator("#q-dlq-table tbody td.empty"), "the dead-letter queue is empty", "empty DLQ");
  const st = await ok(server, "GET", "/api/v1/queue/default/tasks/stats");
  assert.deepEqual([st.ready_count, st.dlq_count, st.delayed_count], [4, 0, 1]);
  assert.ok((await cellTexts(page, "#q-peek-table tbody td.payload")).includes("job-1"), "job-1 is ready again");

  // A new queue is created by the form and listed.
  await page.fill("#q-enq-name", "emails");
  await page.fill("#q-enq-payload", "welcome");
  await page.click("#q-enq");
  await expectText(page.locator("#q-table tr[data-queue='emails'] [data-col=ready]"), "1", "new queue listed");
  await expectText(page.locator("#q-name"), "emails", "and selected");
  await shot(page, "queues-after.png");
});

test("streams: list, info, read from an offset, consumer groups with lag, append", async () => {
  const { page } = browser;
  await visit(page, server.base, "streams");
  const row = page.locator("#s-table tr[data-stream='events']");
  await expectText(row.locator("[data-col=records]"), "30", "records");
  await row.locator("button").click();
  await expectText(page.locator("#s-name"), "events", "selected stream");
  await expectText(page.locator("#s-info-first"), "0", "first offset");
  await expectText(page.locator("#s-info-last"), "29", "last offset");
  await expectCount(page.locator("#s-records tbody tr[data-offset]"), 20, "first page of records");
  await expectText(page.locator("#s-records tbody tr[data-offset='0'] td.payload"), "event-0", "record 0");

  // Consumer group lag, as the API computes it.
  const g = await ok(server, "GET", "/api/v1/stream/default/events/groups/processors");
  assert.ok(g.lag > 0, `lag ${g.lag}`);
  const grow = page.locator("#s-groups tr[data-group='processors']");
  await expectText(grow.locator("[data-col=lag]"), String(g.lag), "group lag");
  await expectText(grow.locator("td").nth(2), "5", "pending");
  await expectText(grow.locator("td").nth(4), "w1", "consumers");

  // Read from an offset.
  await page.fill("#s-offset", "25");
  await page.click("#s-read");
  await expectCount(page.locator("#s-records tbody tr[data-offset]"), 5, "records from 25");
  assert.deepEqual(await cellTexts(page, "#s-records tbody td.payload"),
                   ["event-25", "event-26", "event-27", "event-28", "event-29"]);
  await shot(page, "streams.png");

  // Next page from the first page.
  await page.fill("#s-offset", "0");
  await page.click("#s-read");
  await expectCount(page.locator("#s-records tbody tr[data-offset]"), 20, "page from 0");
  await page.click("#s-next");
  await expectCount(page.locator("#s-records tbody tr[data-offset]"), 10, "next page");
  await expectText(page.locator("#s-records tbody tr[data-offset]").first().locator("td").first(), "20", "next page starts at 20");

  // Append.
  await page.fill("#s-app-payload", "event-30");
  await page.click("#s-append");
  await expectText(row.locator("[data-col=records]"), "31", "records after append");
  await expectText(page.locator("#s-info-last"), "30", "last offset after append");
  const info = await ok(server, "GET", "/api/v1/stream/default/events/info");
  assert.equal(info.last_offset, 30);
});

test("time series: measurements, series, FloQL console drawing a line chart", async () => {
  const { page } = browser;
  await visit(page, server.base, "ts");
  await expectCount(page.locator("#ts-table tbody tr[data-measurement]"), 2, "measurements");
  const cpu = page.locator("#ts-table tr[data-measurement='cpu']");
  await expectText(cpu.locator("td").nth(1), "2", "cpu series count");
  await expectText(page.locator("#ts-table tr[data-measurement='memory'] td").nth(2), "total, used", "memory fields");

  await cpu.locator("button").click();
  await expectCount(page.locator("#ts-series tbody tr"), 2, "cpu series");
  assert.deepEqual(await cellTexts(page, "#ts-series tbody tr td:first-child"), ["host=web-01", "host=web-02"]);
  await expectText(page.locator("#ts-series tbody tr").first().locator("td").nth(2), "20", "points of a series");

  // A query drawing two lines.
  await page.fill("#ts-query", "cpu[1h]");
  await page.click("#ts-run");
  await expectCount(page.locator("#ts-chart path.series"), 2, "lines drawn");
  await expectText(page.locator("#ts-summary"), "2 series, 40 points", "summary");
  const labels = await page.locator("#ts-chart path.series").evaluateAll((ps) => ps.map((p) => p.dataset.label));
  assert.deepEqual(labels, ["cpu.usage{host=web-01}", "cpu.usage{host=web-02}"]);
  const counts = await page.locator("#ts-chart path.series").evaluateAll((ps) => ps.map((p) => Number(p.dataset.points)));
  assert.deepEqual(counts, [20, 20]);
  // Each path has a segment per point, and web-01's rising values rise on screen (y falls).
  const d = await page.locator("#ts-chart path.series").first().getAttribute("d");
  const ys = [...d.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]));
  assert.equal(ys.length, 20);
  assert.ok(ys[0] > ys[19], `web-01 rises: ${ys[0]} -> ${ys[19]}`);
  assert.match(await page.locator("#ts-legend").textContent(), /cpu\.usage\{host=web-01\}.*cpu\.usage\{host=web-02\}/);
  await shot(page, "timeseries.png");

  // An aggregate of one series.
  await page.fill("#ts-query", "cpu{host=web-01}[1h] | max()");
  await page.click("#ts-run");
  await expectText(page.locator("#ts-summary"), "1 series, 1 point", "aggregate summary");
  await expectCount(page.locator("#ts-chart path.series"), 1, "one line");

  // A FloQL error is shown with its position, and no chart.
  await page.fill("#ts-query", "cpu[1h] | frobnicate()");
  await page.click("#ts-run");
  await expectText(page.locator("#ts-error"), /frobnicate|unknown|stage/i, "error message");
  assert.match(await page.locator("#ts-error").textContent(), /\n *\^$/, "caret under the position");
  assert.equal(await page.locator("#ts-chart").isHidden(), true);
  await shot(page, "timeseries-error.png");

  // The series table's Chart button queries one series.
  await page.locator("#ts-series tbody tr").nth(1).locator("button").click();
  await expectText(page.locator("#ts-summary"), "1 series, 20 points", "chart of one series");
  assert.equal(await page.locator("#ts-query").inputValue(), "cpu{host=web-02}[1h] | field(usage)");
});

test("the page fetched nothing but its own server and logged no errors", async () => {
  const foreign = browser.requests.filter((u) => /^(https?|wss?):/.test(u) && !u.startsWith(server.base + "/"));
  assert.deepEqual(foreign, [], "requests to other origins");
  const notApi = browser.requests.filter((u) => u.startsWith(server.base + "/")).filter((u) => {
    const p = new URL(u).pathname;
    return p !== "/" && !p.startsWith("/api/v1/");
  });
  assert.deepEqual(notApi, [], "requests outside / and /api/v1/");
  assert.ok(browser.requests.some((u) => u.includes("/api/v1/metrics")), "the overview used the API");
  // The one failed call is the FloQL error the time-series test provokes on purpose.
  assert.deepEqual(browser.failed, ["400 POST /api/v1/ts/default/query"], "API calls that failed");
  const errors = browser.errors.filter((e) => !/Failed to load resource: .* status of 400/.test(e));
  assert.deepEqual(errors, [], "page errors");
});

test("with auth on, the page is public and asks for the token on 401", async () => {
  const token = "dash-s3cret-token";
  const authServer = await startServer({ auth: true, tokens: token });
  let b;
  try {
    assert.equal((await fetch(authServer.base + "/")).status, 200, "the page itself is public");
    assert.equal((await call(authServer, "GET", "/api/v1/status")).status, 401, "the API is not");
    b = await openBrowser(authServer);
    const { page } = b;
    await page.goto(authServer.base + "/");
    const dialog = page.locator("#token-dialog");
    await dialog.waitFor({ state: "visible", timeout: WAIT_MS });
    await expectText(page.locator("#token-reason"), /auth enabled/, "first prompt");
    await shot(page, "auth-prompt.png");

    // A wrong token is refused and asked again.
    await page.fill("#token-input", "wrong-token");
    await page.click("#token-submit");
    await expectText(page.locator("#token-reason"), /refused/, "second prompt after a wrong token");
    assert.equal(await dialog.isVisible(), true);

    await page.fill("#token-input", token);
    await page.click("#token-submit");
    await dialog.waitFor({ state: "hidden", timeout: WAIT_MS });
    await expectText(page.locator("#ov-status"), "healthy", "overview with the token");
    await expectCount(page.locator("#ov-shard-table tbody tr"), 2, "shard rows with the token");
    assert.equal(await page.locator("#token-btn").isVisible(), true, "the token can be forgotten");

    // Other screens use the same token.
    await page.click("#tabs a[data-view='kv']");
    await expectText(page.locator("#kv-keys tbody td.empty"), "no keys in this namespace", "KV with the token");
    await shot(page, "auth-ok.png");
    // Exactly the two calls made without a token and with the wrong one were refused.
    assert.deepEqual(b.failed, ["401 GET /api/v1/namespaces", "401 GET /api/v1/namespaces"]);
    const pageErrors = b.errors.filter((e) => !/Failed to load resource: .* status of 401/.test(e));
    assert.deepEqual(pageErrors, [], "page errors other than the expected 401s");
  } finally {
    if (b) await b.close();
    await stopServer(authServer);
  }
});
