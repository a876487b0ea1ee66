// Drives one page in Debian's Firefox (firefox-esr) over WebDriver BiDi, with puppeteer-core, for the
// Python tests (tests/browser/firefox.py): one JSON command per line on stdin, one JSON answer per line on
// stdout ({"ok": true, "value": ...} or {"ok": false, "error": "..."}). Nothing is downloaded: the
// browser is the one `make setup` installs.
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const executablePath = process.env.RAPPORT_FIREFOX || "/usr/bin/firefox-esr";
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath,
  headless: true,
  extraPrefsFirefox: {
    // The page asks for a microphone when a call starts: a fake one, granted without a prompt.
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
  },
});
let page = null;
const errors = [];

// True once `selector` matches as asked: `text` (exact) or `contains`, `hidden`, or `gone` (no match).
function matches(selector, text, contains, hidden, gone) {
  const element = document.querySelector(selector);
  if (gone) return element === null;
  if (element === null) return false;
  const shown = element.getClientRects().length > 0 && getComputedStyle(element).visibility !== "hidden";
  if (hidden) return !shown;
  if (!shown) return false;
  const seen = element.textContent.trim().replace(/\s+/g, " ");
  if (text !== null) return seen === text;
  if (contains !== null) return seen.includes(contains);
  return true;
}

const commands = {
  async open({ url, init, width = 760, height = 640 }) {
    page = await browser.newPage();
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.setViewport({ width, height });
    if (init) await page.evaluateOnNewDocument(init);
    await page.goto(url);
    return page.url();
  },
  async wait({ selector, text = null, contains = null, hidden = false, gone = false, timeout = 5000 }) {
    try {
      await page.waitForFunction(matches, { timeout, polling: 50 }, selector, text, contains, hidden, gone);
    } catch (error) {
      const seen = await page.evaluate((s) => document.querySelector(s)?.textContent ?? null, selector);
      throw new Error(`${selector} not as expected within ${timeout} ms (its text: ${JSON.stringify(seen)})`);
    }
    return true;
  },
  async press({ key }) {
    // "Shift+Tab": modifiers held down around the last key, as a person presses them.
    const keys = key.split("+");
    const last = keys.pop();
    for (const modifier of keys) await page.keyboard.down(modifier);
    await page.keyboard.press(last);
    for (const modifier of keys.reverse()) await page.keyboard.up(modifier);
    return true;
  },
  async focused({ selector }) {
    return page.evaluate((s) => document.activeElement === document.querySelector(s), selector);
  },
  async attribute({ selector, name }) {
    return page.evaluate((s, n) => document.querySelector(s)?.getAttribute(n) ?? null, selector, name);
  },
  async evaluate({ expression }) {
    return page.evaluate(expression);
  },
  async content() {
    return page.content();
  },
  async shot({ path }) {
    await page.screenshot({ path });
    return path;
  },
  async errors() {
    return errors;
  },
  async version() {
    return browser.version();
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { command, ...parameters } = JSON.parse(line);
  let answer;
  try {
    answer = { ok: true, value: await commands[command](parameters) };
  } catch (error) {
    answer = { ok: false, error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
