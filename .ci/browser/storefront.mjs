// The storefront and the admin console in a real browser (Debian's
// Chromium through playwright-core), against the real binary and gateway
// simulators that .ci/browser.sh starts. Every page visited is checked by
// axe-core (no serious or critical violation) and photographed at desktop
// and phone size into $RESULTS.
//
// Environment: BASE (http://127.0.0.1:port), TENANT, SERVICE_TOKEN,
// ADMIN_EMAIL, ADMIN_PASSWORD, RESULTS, CHROMIUM (default /usr/bin/chromium).

import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const { BASE, TENANT, SERVICE_TOKEN, ADMIN_EMAIL, ADMIN_PASSWORD } = process.env;
const RESULTS = process.env.RESULTS || "results/browser";
const SHOP = `${BASE}/shop/${TENANT}`;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
mkdirSync(RESULTS, { recursive: true });

let checks = 0;
function check(condition, what) {
  if (!condition) throw new Error(`FAILED: ${what}`);
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

// axe-core on the page as it is now; serious and critical violations fail.
const audited = [];
async function audit(page, name) {
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(async () => await window.axe.run(document, {
    resultTypes: ["violations"],
  }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const violation of bad) {
    console.error(`${name}: ${violation.impact} ${violation.id}: ${violation.help}`);
    for (const node of violation.nodes.slice(0, 3)) console.error(`   ${node.target.join(" ")}`);
  }
  audited.push(name);
  check(bad.length === 0, `axe: no serious or critical violations on ${name}`);
}

// Desktop and phone screenshots of the page, then back to its own size.
async function shoot(page, name) {
  const size = page.viewportSize();
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: `${RESULTS}/${name}-desktop.png`, fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: `${RESULTS}/${name}-phone.png`, fullPage: true });
  await page.setViewportSize(size);
}

async function visit(page, name) {
  await audit(page, name);
  await shoot(page, name);
}

async function api(method, path, body) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${SERVICE_TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

async function until(what, probe, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`FAILED: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const pages = [];
browser.on("disconnected", () => {});
try {
  // ---- The admin: sign in, create a sale in three tiers, upload codes.
  const adminContext = await browser.newContext({ viewport: DESKTOP, bypassCSP: true });
  const admin = await adminContext.newPage();
  pages.push(["admin", admin]);
  await admin.goto(`${SHOP}/signin`);
  await visit(admin, "sign-in");
  await admin.getByLabel("Email").fill(ADMIN_EMAIL);
  await admin.getByLabel("Password").fill(ADMIN_PASSWORD);
  await admin.getByRole("button", { name: "Sign in" }).click();
  await admin.waitForURL(/\/admin$/);
  check(await admin.getByRole("heading", { name: "Campaigns" }).isVisible(), "an admin lands on the console");
  await visit(admin, "admin-campaigns");

  await admin.getByRole("link", { name: "New campaign" }).click();
  await visit(admin, "admin-new-campaign");
  await admin.getByLabel("Name", { exact: true }).fill("Hot Deal");
  await admin.getByLabel("Message").fill("Up to 90 % off, while 8 last");
  await admin.getByLabel("Terms and conditions").fill("One per person.\n\nNot refundable.");
  await admin.getByLabel("Kind").selectOption("sale");
  await admin.getByLabel("Supply").fill("8");
  await admin.getByLabel("Price", { exact: true }).fill("1500");
  await admin.getByLabel("Currency").fill("THB");
  const tiers = [["2", "90"], ["5", "70"], ["8", "50"]];
  for (const [index, [until_rank, discount]] of tiers.entries()) {
    await admin.getByLabel(`Tier ${index + 1}: until rank`).fill(until_rank);
    await admin.getByLabel(`Tier ${index + 1}: discount %`).fill(discount);
  }
  await admin.getByLabel("Codes", { exact: true }).selectOption("upload");
  // A discount over 100 % is refused with the field named, and nothing is made.
  await admin.getByLabel("Tier 2: discount %").fill("170");
  await admin.getByRole("button", { name: "Create the draft" }).click();
  const message = await admin.getByLabel("Tier 2: discount %").evaluate((input) => input.validationMessage);
  check(message.length > 0 && /\/new$/.test(admin.url()), `the page refuses a 170 % discount itself ("${message}")`);
  // Past the page's own check, the server refuses it too.
  await admin.getByLabel("Tier 2: discount %").evaluate((input) => input.removeAttribute("max"));
  await admin.getByRole("button", { name: "Create the draft" }).click();
  check(await admin.getByRole("alert").isVisible(), "the server refuses an invalid tier with a message");
  check((await admin.content()).includes("tiers"), "the refusal names the tiers");
  await admin.getByLabel("Tier 2: discount %").fill("70");
  await admin.getByRole("button", { name: "Create the draft" }).click();
  await admin.waitForURL(/\/admin\/campaigns\/[0-9a-f-]+$/);
  const saleId = admin.url().split("/").pop();
  check((await admin.content()).includes("until rank 5: 70 % off"), "the campaign shows its three tiers");

  const csv = "code\nHOT-01\nHOT-02\nHOT-03\nHOT-02\nHOT-04\nHOT-05\nHOT-01\nHOT-06\nHOT-07\nHOT-08\n";
  await admin.getByLabel(/CSV file/).setInputFiles({ name: "codes.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
  await admin.getByRole("button", { name: "Upload" }).click();
  await admin.waitForSelector("[data-upload]");
  check((await admin.textContent("[data-added]")) === "8", "eight codes were added");
  check((await admin.textContent("[data-duplicates]")) === "2", "two duplicates are reported");
  const duplicates = await admin.locator("details li code").allTextContents();
  check(duplicates.includes("HOT-01") && duplicates.includes("HOT-02"), "the duplicates are listed");
  await visit(admin, "admin-upload-report");
  await admin.getByRole("button", { name: "Publish" }).click();
  await admin.waitForURL(/\/admin\/campaigns\/[0-9a-f-]+$/);
  check((await admin.textContent("[data-state]")) === "live", "the sale is live");

  // A first-login coupon, through the same form.
  await admin.goto(`${SHOP}/admin/campaigns/new`);
  await admin.getByLabel("Name", { exact: true }).fill("Welcome: 30 % off");
  await admin.getByLabel("Kind").selectOption("coupon");
  await admin.getByLabel("Supply").fill("100");
  await admin.getByLabel("Trigger").selectOption("first_login");
  await admin.getByLabel("Code pattern").fill("WELCOME-####-????");
  await admin.getByRole("button", { name: "Create the draft" }).click();
  await admin.waitForURL(/\/admin\/campaigns\/[0-9a-f-]+$/);
  await admin.getByRole("button", { name: "Publish" }).click();
  await admin.waitForURL(/\/admin\/campaigns\/[0-9a-f-]+$/);
  check((await admin.textContent("[data-state]")) === "live", "the welcome coupon is live");

  // ---- The dashboard moves while a small burst of claims runs.
  await admin.goto(`${SHOP}/admin/campaigns/${saleId}/dashboard`);
  await until("the first dashboard update", async () => Number(await admin.getAttribute("#dashboard", "data-updates")) >= 1);
  check((await admin.textContent("#reserved")) === "0", "nothing is reserved before the burst");
  const burst = await Promise.all([1, 2, 3, 4].map((n) =>
    api("POST", `/v1/campaigns/${saleId}/claims`, { user_id: `burst-${n}` })));
  check(burst.every((answer) => answer.status === 201), "the burst's four claims reserved");
  await until("the dashboard to show the burst", async () => (await admin.textContent("#reserved")) === "4");
  await until("the chart to draw the burst", async () => /peak [1-9]/.test(await admin.textContent("#chart-max")));
  const heights = ((await admin.getAttribute("#line", "points")) || "").trim().split(" ").map((point) => Number(point.split(",")[1]));
  check(heights.length === 121 && heights.some((y) => y < 155), "the chart's line rises for the burst's second");
  check((await admin.textContent("#available")) === "4", "the dashboard counts what is left");
  check((await admin.locator("#tiers tr").count()) === 3, "the dashboard shows three tiers");
  await visit(admin, "admin-dashboard");

  // ---- A customer on a phone: the shop, sign-up (their first login), buying.
  const customerContext = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, bypassCSP: true });
  const customer = await customerContext.newPage();
  pages.push(["customer", customer]);
  await customer.goto(SHOP);
  await visit(customer, "storefront");
  await customer.getByRole("link", { name: "Hot Deal" }).click();
  // The burst took ranks 1 to 4; the next buyer's rank 5 is the last of the 70 % tier.
  check(await customer.getByText("1 left at this price").isVisible(), "the campaign says how many are left at its price");
  check(await customer.getByText("70 % off").isVisible(), "the current tier's discount is shown");
  check(await customer.getByText("฿450.00").isVisible(), "the current tier's price is shown in baht");
  await visit(customer, "campaign");
  await customer.getByRole("button", { name: "Buy now" }).click();
  await customer.waitForURL(/\/signin/);
  await customer.getByRole("link", { name: "Create an account" }).click();
  await customer.waitForURL(/\/signup/);
  await visit(customer, "sign-up");
  await customer.getByLabel("Email").fill("buyer@example.com");
  await customer.getByLabel("Password").fill("correct horse battery");
  await customer.getByRole("button", { name: "Create an account" }).click();
  await customer.waitForURL(/\/me\?granted=1/);
  check(await customer.getByText("Welcome! You received").isVisible(), "the first sign-in grants the welcome coupon");
  check((await customer.locator("tbody tr").count()) === 1, "one voucher after the first sign-in");
  await visit(customer, "my-vouchers-welcome");

  await customer.goto(`${SHOP}/campaigns/${saleId}`);
  await customer.getByRole("button", { name: "Buy now" }).click();
  await customer.waitForURL(/\/checkout$/);
  const checkoutUrl = customer.url();
  await visit(customer, "checkout");
  await customer.getByLabel("Email").fill("buyer@example.com");
  await customer.getByLabel("Card number").fill("4242 4242 4242 4241");
  await customer.getByLabel(/Expiry/).fill("12/40");
  await customer.getByLabel(/CVC/).fill("123");
  await customer.getByLabel("Name on the card").fill("A Buyer");
  await customer.getByRole("button", { name: /Pay/ }).click();
  check(await customer.locator("[data-client-error]").isVisible(), "the page refuses an invalid card before sending it");
  check(customer.url() === checkoutUrl, "nothing was sent");
  // The same card past the page's check: the server refuses it too.
  await Promise.all([
    customer.waitForNavigation(),
    customer.evaluate(() => HTMLFormElement.prototype.submit.call(document.querySelector("form[data-card-form]"))),
  ]);
  check((await customer.content()).includes("check digit"), "the server refuses the invalid card, naming why");
  check((await customer.getByLabel("Card number").getAttribute("aria-invalid")) === "true", "the card field is marked invalid");
  await visit(customer, "checkout-refused");
  await customer.getByLabel("Card number").fill("4242 4242 4242 4242");
  await customer.getByLabel(/CVC/).fill("123");
  await customer.getByRole("button", { name: /Pay/ }).click();
  await customer.waitForURL(/\/orders\//);
  await visit(customer, "order-pending");
  await customer.waitForSelector('[data-order-status="paid"]', { timeout: 30_000 });
  const code = (await customer.textContent("[data-code]")).trim();
  check(code.startsWith("HOT-0"), `the order page shows the code once paid (${code})`);
  await visit(customer, "order-paid");
  await customer.getByRole("link", { name: "My vouchers and courses" }).first().click();
  check(await customer.getByText(code).isVisible(), "my vouchers show the code");
  await visit(customer, "my-vouchers");

  // ---- Sold out: the rest go to others; the page says so.
  const rest = await Promise.all([5, 6, 7].map((n) =>
    api("POST", `/v1/campaigns/${saleId}/claims`, { user_id: `late-${n}` })));
  check(rest.every((answer) => answer.status === 201), "the last three are reserved");
  const late = await api("POST", `/v1/campaigns/${saleId}/claims`, { user_id: "too-late" });
  check(late.status === 410, "the ninth claim is told sold out");
  await until("the page to say sold out", async () => {
    await customer.goto(`${SHOP}/campaigns/${saleId}`);
    return (await customer.getByText("Sold out").count()) > 0;
  }, 15);
  check((await customer.getByRole("button", { name: "Buy now" }).count()) === 0, "no buy button once sold out");
  await visit(customer, "sold-out");
  await customer.goto(`${SHOP}/campaigns/${saleId}?lang=th`);
  check(await customer.getByText("ขายหมดแล้ว").first().isVisible(), "the Thai page says sold out in Thai");
  await visit(customer, "sold-out-thai");
  await customer.goto(`${SHOP}/campaigns/${saleId}/terms`);
  await visit(customer, "terms");

  // ---- The second sign-in grants nothing more.
  await customer.goto(`${SHOP}/me`);
  await customer.getByRole("button", { name: "Sign out" }).click();
  await customer.goto(`${SHOP}/signin`);
  await customer.getByLabel("Email").fill("buyer@example.com");
  await customer.getByLabel("Password").fill("correct horse battery");
  await customer.getByRole("button", { name: "Sign in" }).click();
  await customer.waitForURL(/\/me$/);
  check((await customer.getByText("Welcome! You received").count()) === 0, "the second sign-in grants nothing");
  check((await customer.locator("tbody tr", { hasText: "Welcome" }).count()) === 1, "still one welcome coupon");

  // ---- A form post without its CSRF token is refused, and nothing changes.
  const forged = await customer.request.post(`${SHOP}/signout`, { form: { lang: "en" }, maxRedirects: 0 });
  check(forged.status() === 403, "a post without its CSRF token is refused (403)");
  await customer.goto(`${SHOP}/me`);
  check(await customer.getByRole("button", { name: "Sign out" }).isVisible(), "the forged sign-out changed nothing");
  const wrongPassword = await browser.newContext({ bypassCSP: true });
  const stranger = await wrongPassword.newPage();
  await stranger.goto(`${SHOP}/signin`);
  await stranger.getByLabel("Email").fill("buyer@example.com");
  await stranger.getByLabel("Password").fill("not the password");
  await stranger.getByRole("button", { name: "Sign in" }).click();
  check(await stranger.getByRole("alert").isVisible(), "a wrong password is refused with a message");
  await visit(stranger, "sign-in-refused");

  console.log(`\n${checks} checks passed; axe-core checked ${audited.length} pages; screenshots in ${RESULTS}`);
} catch (error) {
  // What each page showed when the run failed, for the log and the results.
  for (const [name, page] of pages) {
    const { writeFileSync } = await import("node:fs");
    writeFileSync(`${RESULTS}/failure-${name}.html`, await page.content().catch(() => ""));
    await page.screenshot({ path: `${RESULTS}/failure-${name}.png`, fullPage: true }).catch(() => {});
    console.error(`--- ${name} at ${page.url()}:\n${(await page.locator("main").innerText().catch(() => "")).slice(0, 2000)}`);
  }
  throw error;
} finally {
  await browser.close();
}
