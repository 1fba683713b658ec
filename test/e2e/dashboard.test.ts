import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import t from 'tap';
import { ADMIN, inProcess, until } from '../helpers/appliance.js';
import { skipUnlessCi } from '../helpers/lab.js';
import { addHost, addMachine, HOSTS } from '../helpers/resources.js';
import { bmcWithMachine } from '../helpers/workflow.js';

const CHROMIUM = '/usr/bin/chromium';

t.test(
  'dashboard in headless Chromium: live states over SSE, report, per-MAC boot timeline',
  { skip: skipUnlessCi(!existsSync(CHROMIUM), 'needs Debian chromium (make setup)') },
  async (t) => {
    let base = '';
    const mac = '52:54:00:da:00:01';
    const { address } = await bmcWithMachine(t, () => base, mac, { postMs: 300 });
    const a = await inProcess(t);
    base = a.base;
    await addHost(a.kube, {
      name: 'dash1',
      spec: { redfish: { address, username: 'admin', password: 'secret', allowPlainHttp: true } },
    });
    await until('Available', async () =>
      (await a.kube('GET', `${HOSTS}/dash1`)).json.status.state === 'Available' ? true : undefined,
    );

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ], // playwright gives it a fresh profile
    });
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));

    await page.goto(`${base}/`);
    t.ok(await page.locator('#login').isVisible(), 'no token: the login form');
    await page.fill('#token', ADMIN);
    await page.click('#save');
    await page.waitForSelector('#live.on');
    const row = page.locator('#hosts tr', { hasText: 'dash1' });
    await t.resolves(row.locator('td.state', { hasText: 'Available' }).waitFor(), 'host listed as Available');

    // no reload from here on: everything below arrives over the event stream
    await addMachine(a.kube, {
      name: 'dm',
      spec: {
        inspectionImageURL: 'http://127.0.0.1/i',
        targetImageURL: 'http://127.0.0.1/t',
        targetImageDigest: `sha256:${'a'.repeat(64)}`,
      },
    });
    await t.resolves(
      row.locator('td.state', { hasText: 'Provisioned' }).waitFor({ timeout: 20_000 }),
      'host turns Provisioned live',
    );
    await t.resolves(
      page.locator('#machines tr', { hasText: 'dm' }).locator('td.state', { hasText: 'Provisioned' }).waitFor(),
      'machine turns Provisioned live',
    );

    await row.click();
    await t.resolves(
      page.locator('#report pre', { hasText: 'CPU 1 sockets, 4 cores, 8 threads' }).waitFor(),
      'report shown',
    );
    await page.locator('#macs tr', { hasText: mac }).click();
    const tl = page.locator('#timeline');
    await t.resolves(
      tl.locator('tr', { hasText: 'host script: inspect' }).waitFor(),
      'timeline: the inspect script was fetched',
    );
    await t.resolves(tl.locator('tr', { hasText: 'ReportReceived' }).waitFor(), 'timeline: report');
    const shot = path.join(tmpdir(), 'beskar7-dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.comment(`screenshot: ${shot}`);
    t.same(errors, [], 'no script errors in the page');
  },
);
