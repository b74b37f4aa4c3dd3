// The operator console in a real browser: headless Chromium driven by
// playwright-core, against an authd (with --console) over a real Redis.
//   node tests/console/console.mjs <base url> <operator key> <screenshot dir>
// Needs /usr/bin/chromium and playwright-core (scripts/test.sh installs both);
// PLAYWRIGHT_CORE names its directory (default .tools/playwright/...).
// Exits non-zero, saying which step failed, on any failure.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const [url, operatorKey, shots] = process.argv.slice(2);
if (!url || !operatorKey || !shots) {
  console.error("usage: node console.mjs <base url> <operator key> <screenshot dir>");
  process.exit(2);
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pwDir = process.env.PLAYWRIGHT_CORE || path.join(root, ".tools/playwright/node_modules/playwright-core");
let chromium;
try {
  ({ chromium } = createRequire(import.meta.url)(pwDir));
} catch (e) {
  console.error(`playwright-core not found at ${pwDir} (npm i --prefix .tools/playwright playwright-core): ${e.message}`);
  process.exit(3);
}
mkdirSync(shots, { recursive: true });

let step = "start";
function check(ok, what) {
  if (!ok) throw new Error(what);
}

/// curl <args>: [status, body as JSON].
function curl(...args) {
  const out = execFileSync("curl", ["-sS", "--max-time", "10", "-w", "\n%{http_code}", ...args], { encoding: "utf8" });
  const i = out.lastIndexOf("\n");
  return [Number(out.slice(i + 1)), JSON.parse(out.slice(0, i))];
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  timeout: 30000,
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  // Prompts (roll grace) get 60 s; confirmations are accepted.
  page.on("dialog", (d) => (d.type() === "prompt" ? d.accept("60") : d.accept()));
  // A CSP violation or a script error shows up here: both fail the test.
  // (Refused calls the test makes on purpose, 401 and 404, log "Failed to
  // load resource": not a problem of the page.)
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  const text = (sel) => page.locator(sel).textContent();
  const noticeSays = (needle) =>
    page.waitForFunction((n) => {
      const el = document.getElementById("notice");
      return !el.hidden && el.textContent.includes(n);
    }, needle);

  step = "a wrong operator key is refused with a clear message";
  const resp = await page.goto(url + "/console/");
  check(resp.status() === 200, "console page status " + resp.status());
  const csp = resp.headers()["content-security-policy"] || "";
  check(csp.includes("default-src 'self'") && !csp.includes("unsafe-inline"), "CSP: " + csp);
  check(resp.headers()["x-frame-options"] === "DENY", "X-Frame-Options");
  await page.fill("#signin-key", "opk_not-a-real-key");
  await page.click("#signin-form button");
  await page.waitForSelector("#signin-error:not([hidden])");
  check((await text("#signin-error")).includes("was refused"), "refusal message: " + (await text("#signin-error")));
  check(await page.isHidden("#tenants"), "refused key must not sign in");
  await page.screenshot({ path: path.join(shots, "1-signin-refused.png") });

  step = "sign in";
  await page.fill("#signin-key", operatorKey);
  await page.click("#signin-form button");
  await page.waitForSelector("#tenants:not([hidden])");
  check((await page.evaluate(() => document.cookie)) === "", "no cookie is set");
  check((await page.evaluate(() => sessionStorage.getItem("authd.operatorKey"))) === operatorKey, "key in sessionStorage");

  step = "create a tenant";
  const name = "acme-console";
  await page.fill("#tenant-name", name);
  await page.fill("#tenant-idle", "3600");
  await page.fill("#tenant-max", "86400");
  await page.click("#tenant-create button");
  await page.waitForSelector("#tenant:not([hidden])");
  check((await text("#tenant-title")) === "Tenant " + name, "tenant title");
  check((await text("#tenant-info")).includes("3600s"), "idle timeout shown");
  await page.click("#back");
  await page.waitForFunction((n) => document.getElementById("tenant-list").textContent.includes(n), name);
  await page.screenshot({ path: path.join(shots, "2-tenants.png") });
  await page.locator("#tenant-list tbody tr", { hasText: name }).getByText("Open").click();
  await page.waitForSelector("#tenant:not([hidden])");

  step = "New API key, shown once, used with curl";
  await page.selectOption("#key-env", "ENVIRONMENT_TEST");
  await page.fill("#key-name", "backend");
  await page.click("#key-create button");
  await page.waitForSelector("#shown-once:not([hidden])");
  const apiKey = (await text("#secret-value")).trim();
  check(apiKey.startsWith("sk_test_"), "API key on the page: " + apiKey);
  check((await text("#shown-once")).includes("shown only this once"), "shown-once warning");
  await page.waitForSelector("#key-list tbody tr");
  await page.click("#copy-secret");
  await noticeSays("Copied");
  check((await page.evaluate(() => navigator.clipboard.readText())) === apiKey, "copy button copies the key");
  await page.screenshot({ path: path.join(shots, "3-api-key-shown-once.png"), fullPage: true });
  let [code, body] = curl("-X", "POST", url + "/v1/clients", "-H", "Authorization: Bearer " + apiKey, "-d", "{}");
  check(code === 200 && String(body.token).startsWith("cst_test_"), `curl with the API key: ${code} ${JSON.stringify(body)}`);

  step = "the clients list: a client made with curl, Next paging, opened";
  const made = body.client.clientId;
  for (let i = 0; i < 20; i++) {
    [code, body] = curl("-X", "POST", url + "/v1/clients", "-H", "Authorization: Bearer " + apiKey, "-d", "{}");
    check(code === 200, `curl, client ${i + 2}: ${code} ${JSON.stringify(body)}`);
  }
  await page.selectOption("#client-env", "ENVIRONMENT_TEST");
  await page.click("#client-filter button");
  await page.waitForFunction(() => document.querySelectorAll("#client-list tbody tr").length === 20);
  const madeRow = page.locator("#client-list tbody tr", { hasText: made });
  check((await madeRow.textContent()).includes("test"), "the curl client, oldest, on the first page of 20");
  check(await page.isVisible("#clients-next"), "21 clients: a Next page");
  await page.click("#clients-next");
  await page.waitForFunction(() => document.querySelectorAll("#client-list tbody tr").length === 1);
  check(await page.isHidden("#clients-next"), "the last page has no Next");
  check(!(await text("#client-list")).includes(made), "the second page holds the rest");
  await page.click("#clients-first");
  await madeRow.getByText("Open").click();
  await page.waitForFunction(
    (id) => !document.getElementById("client").hidden && document.getElementById("client-info").textContent.includes(id),
    made,
  );
  check((await text("#session-list")).includes("no"), "its first session, from the curl call, listed");

  step = "New test client key, used, revoked, refused";
  await page.click("#dismiss-secret");
  await page.click("#tck-create button");
  await page.waitForFunction(() => document.getElementById("secret-value").textContent.startsWith("tck_test_"));
  const tck = (await text("#secret-value")).trim();
  [code, body] = curl(url + "/v1/session", "-H", "Authorization: Bearer " + tck);
  check(code === 200 && body.session.testKey === true, `curl with the test client key: ${code} ${JSON.stringify(body)}`);
  await page.waitForSelector("#client:not([hidden]) #session-list tbody tr");
  await page.click("#session-list tbody tr button");
  await noticeSays("revoked");
  [code, body] = curl(url + "/v1/session", "-H", "Authorization: Bearer " + tck);
  const reason = (body.error?.details || []).map((d) => d.reason).join();
  check(code === 401 && reason === "INVALID_API_KEY", `revoked test client key: ${code} ${JSON.stringify(body)}`);
  // The secret of what was just revoked is no longer on the page.
  check(await page.locator("#shown-once").isHidden(), "the revoked key's secret is still shown");
  check(!(await text("body")).includes(tck), "the revoked key's secret is still in the page");

  step = "the audit trail";
  await page.waitForFunction(() => {
    const t = document.getElementById("audit-list").textContent;
    return t.includes("session.revoke") && t.includes("client.create");
  });
  // Newest first: the revocation just made heads the trail.
  const newest = await page.locator("#audit-list tbody tr").first().locator("td").nth(2).textContent();
  check(newest === "session.revoke", `the newest audit event first: ${newest}`);
  // The 21 clients made above fill the first page: the API key's creation is on an older one.
  const firstAudit = await text("#audit-list");
  await page.click("#audit-next");
  await page.waitForFunction((b) => document.getElementById("audit-list").textContent !== b, firstAudit);
  check((await text("#audit-list")).includes("api_key.create"), "the API key's creation on an older page of the trail");
  await page.click("#audit-first");
  await page.waitForFunction((b) => document.getElementById("audit-list").textContent === b, firstAudit);
  await page.screenshot({ path: path.join(shots, "4-tenant.png"), fullPage: true });

  step = "roll an API key with grace";
  const rows = await page.locator("#key-list tbody tr").count();
  await page.locator("#key-list tbody tr").first().getByText("Roll").click();
  await page.waitForFunction(() => document.getElementById("shown-once-what").textContent.startsWith("Rolled"));
  await page.waitForFunction((n) => document.querySelectorAll("#key-list tbody tr").length === n + 1, rows);

  step = "revoke an API key";
  await page.locator("#key-list tbody tr").last().getByText("Revoke").click();
  await noticeSays("Revoked");

  step = "revoke all sessions of a client, then delete it";
  const tck2 = await (async () => {
    await page.click("#tck-create button");
    await page.waitForFunction((old) => {
      const t = document.getElementById("secret-value").textContent;
      return t.startsWith("tck_test_") && t !== old;
    }, tck);
    return (await text("#secret-value")).trim();
  })();
  check(tck2.startsWith("tck_test_") && tck2 !== tck, "a second test client key");
  await page.waitForSelector("#client:not([hidden]) #session-list tbody tr");
  await page.click("#revoke-all");
  await noticeSays("1 session(s) revoked");
  [code, body] = curl(url + "/v1/session", "-H", "Authorization: Bearer " + tck2);
  check(code === 401, `after revoke all: ${code} ${JSON.stringify(body)}`);
  await page.click("#delete-client");
  await noticeSays("deleted");
  check(await page.isHidden("#client"), "the deleted client is no longer shown");

  step = "revoke-before needs the typed name";
  check(await page.isDisabled("#revoke-before-go"), "disabled before typing");
  await page.fill("#revoke-confirm", "acme");
  check(await page.isDisabled("#revoke-before-go"), "disabled with a wrong name");
  await page.fill("#revoke-confirm", name);
  check(await page.isEnabled("#revoke-before-go"), "enabled with the name");
  await page.click("#revoke-before-go");
  await noticeSays("issued before");
  [code, body] = curl("-X", "POST", url + "/v1/clients", "-H", "Authorization: Bearer " + apiKey, "-d", "{}");
  check(code === 401, `API key after revoke-before: ${code} ${JSON.stringify(body)}`);
  await page.screenshot({ path: path.join(shots, "5-after-revoke-before.png"), fullPage: true });

  step = "no script errors, no CSP violations";
  check(problems.length === 0, "browser console errors: " + problems.join(" | "));
  console.log("console test: ok (" + shots + ")");
} catch (e) {
  console.error(`console test FAILED at step "${step}": ${e.message}`);
  if (problems.length) console.error("browser console errors: " + problems.join(" | "));
  process.exitCode = 1;
} finally {
  await browser.close();
}
