// Two buyers on the same seated event, each in their own browser context of Debian's
// Chromium, driving the page the binary serves. Run by tests/api/browser.rs, which prepares
// the event and the accounts and checks PostgreSQL afterwards. Prints one JSON line of
// findings; exits non-zero at the first thing that does not hold.
//
// Environment: BASE_URL, EVENT_NAME, QUEUE_EVENT_NAME, A_EMAIL, B_EMAIL, PASSWORD, DISCOUNT_CODE, SCREENSHOT,
// CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("BASE_URL");
const server = new URL(base).host;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // No network but the server's: anything the page needed from elsewhere would fail.
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
});
const problems = [];
const findings = {};

async function buyer(email, options) {
  const context = await browser.newContext(options);
  await context.route("**/*", (route) => {
    const host = new URL(route.request().url()).host;
    if (host === server) return route.continue();
    problems.push(`request to another host: ${route.request().url()}`);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error (${email}): ${e.message}`));
  page.on("console", (m) => m.type() === "error" && !/Failed to load resource/.test(m.text()) && problems.push(`console error (${email}): ${m.text()}`));
  await page.goto(`${base}/#/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(env("PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "On sale now" }).waitFor();
  await page.getByRole("link", { name: env("EVENT_NAME") }).click();
  await page.locator("button.seat[data-seat-id]").first().waitFor();
  return page;
}

const status = (page, id) => page.locator(`[data-seat-id="${id}"]`).getAttribute("data-status");

try {
  const a = await buyer(env("A_EMAIL"), { viewport: { width: 1280, height: 900 } });
  // B reads the page on a phone.
  const b = await buyer(env("B_EMAIL"), { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const seats = a.locator("button.seat[data-status=AVAILABLE]");
  findings.seats = await seats.count();
  check(findings.seats > 4, `the seat map has seats (${findings.seats})`);
  const ids = [];
  for (const i of [2, 3]) ids.push(Number(await seats.nth(i).getAttribute("data-seat-id")));

  // A picks two seats (the second with the keyboard) and holds them.
  await a.locator(`[data-seat-id="${ids[0]}"]`).click();
  await a.locator(`[data-seat-id="${ids[1]}"]`).focus();
  await a.keyboard.press("Space");
  check((await a.locator(`[data-seat-id="${ids[1]}"]`).getAttribute("aria-pressed")) === "true", "a seat can be selected with the keyboard");
  await a.getByRole("button", { name: "Hold selected seats" }).click();
  await a.locator("#countdown").waitFor();
  const heldAt = Date.now();
  const countdown = await a.locator("#countdown").textContent();
  check(/^\d+:\d\d$/.test(countdown), `the hold shows a countdown (${countdown})`);

  // B's map shows them held, without a reload, within a second.
  await b.waitForFunction(
    (ids) => ids.every((id) => document.querySelector(`[data-seat-id="${id}"]`)?.dataset.status === "RESERVED"),
    ids,
    { timeout: 1000 },
  );
  findings.propagationMs = Date.now() - heldAt;
  // B cannot select a taken seat: the button is disabled and a forced click changes nothing.
  const taken = b.locator(`[data-seat-id="${ids[0]}"]`);
  check(await taken.isDisabled(), "a held seat cannot be chosen");
  await taken.click({ force: true });
  check((await taken.getAttribute("aria-pressed")) === "false", "a forced click on a held seat does not select it");
  check(!(await b.getByRole("button", { name: "Hold selected seats" }).isEnabled()), "nothing to hold");

  // A books with the discount code and sees the booking.
  await a.getByLabel("Discount code").fill(env("DISCOUNT_CODE"));
  await a.getByRole("button", { name: "Book" }).click();
  await a.locator("#reference").waitFor();
  findings.reference = (await a.locator("#reference").textContent()).trim();
  const booked = await a.locator("#booked").textContent();
  check(/discount/.test(booked), `the booking shows its discount: ${booked}`);
  await b.waitForFunction(
    (ids) => ids.every((id) => document.querySelector(`[data-seat-id="${id}"]`)?.dataset.status === "BOOKED"),
    ids,
    { timeout: 5000 },
  );
  await a.getByRole("link", { name: "See my bookings" }).click();
  await a.getByRole("heading", { name: "My bookings" }).waitFor();
  check((await a.locator(`[data-reference="${findings.reference}"]`).count()) === 1, "my bookings lists it");

  // B takes the best available pair, then releases it.
  await b.getByRole("button", { name: "Best available" }).first().click();
  await b.locator("#countdown").waitFor();
  await b.getByRole("button", { name: "Release" }).click();
  await b.locator("#countdown").waitFor({ state: "detached" });

  await b.screenshot({ path: env("SCREENSHOT"), fullPage: true });
  findings.screenshot = env("SCREENSHOT");
  findings.heldSeats = ids;

  // A cancels the booking from My bookings; B's map gives the seats back.
  await a.getByRole("button", { name: "Cancel" }).click();
  await a.locator(`[data-reference="${findings.reference}"]`, { hasText: "CANCELLED" }).waitFor();
  await b.waitForFunction(
    (ids) => ids.every((id) => document.querySelector(`[data-seat-id="${id}"]`)?.dataset.status === "AVAILABLE"),
    ids,
    { timeout: 5000 },
  );
  // A goes to an on-sale with a waiting room: no hold before joining the line, then the
  // page follows A's place and lets A hold once it is A's turn.
  await a.goto(`${base}/#/events`);
  await a.getByRole("link", { name: env("QUEUE_EVENT_NAME") }).click();
  await a.getByRole("button", { name: "Join the line" }).waitFor();
  check(await a.getByRole("button", { name: "Hold tickets" }).isDisabled(), "no hold before one's turn");
  await a.getByRole("button", { name: "Join the line" }).click();
  await a.locator("#queue-status", { hasText: "It's your turn" }).waitFor({ timeout: 15000 });
  await a.getByRole("button", { name: "Hold tickets" }).click();
  await a.locator("#countdown").waitFor();
  findings.queueStatus = (await a.locator("#queue-status").textContent()).trim();

  check(problems.length === 0, problems.join("\n"));
  console.log(JSON.stringify(findings));
} finally {
  await browser.close();
}
