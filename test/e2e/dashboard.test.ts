import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { ADMIN, inProcess, READ_ONLY, until } from '../helpers/appliance.js';
import { skipUnlessCi } from '../helpers/lab.js';
import { addHost, addMachine, HOSTS, MACHINES, SECRETS } from '../helpers/resources.js';
import { bmcWithMachine } from '../helpers/workflow.js';
import { FakeBmc } from '../lab/fake-bmc/server.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = path.join(tmpdir(), 'beskar7-dashboard');

async function browse(t: Test): Promise<Browser> {
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
  return browser;
}

/** A page signed in with `token`, at `width` px, whose script errors are collected. */
async function signedIn(browser: Browser, base: string, token: string, width = 1280) {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}/ui`);
  await page.fill('#token', token);
  await page.click('#save');
  await page.waitForSelector('#live.on');
  return { page, errors };
}

const shot = async (page: Page, name: string) => {
  mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
};

t.test(
  'dashboard in headless Chromium: fleet, live lists, boot waterfall, actions, apply, read-only, 1000 hosts, reconnect',
  { skip: skipUnlessCi(!existsSync(CHROMIUM), 'needs Debian chromium (make setup)') },
  async (t) => {
    let base = '';
    const mac = '52:54:00:da:00:01';
    const { bmc, address } = await bmcWithMachine(t, () => base, mac, { postMs: 300 });
    const a = await inProcess(t);
    base = a.base;
    await addHost(a.kube, {
      name: 'dash1',
      spec: { redfish: { address, username: 'admin', password: 'secret', allowPlainHttp: true } },
    });
    await until('Available', async () =>
      (await a.kube('GET', `${HOSTS}/dash1`)).json.status.state === 'Available' ? true : undefined,
    );
    const browser = await browse(t);
    const { page, errors } = await signedIn(browser, base, ADMIN);
    t.equal(await page.locator('#role').textContent(), 'admin');
    await t.resolves(
      page.locator('#host-states .chip.Available', { hasText: '1' }).waitFor(),
      'fleet: one host Available',
    );

    // the list follows the resource API's watch: no reload from here on
    await page.click('a[href="#/hosts"]');
    const row = page.locator('#list .vrow', { hasText: 'dash1' });
    await t.resolves(row.locator('.state', { hasText: 'Available' }).waitFor(), 'host listed as Available');
    await addMachine(a.kube, {
      name: 'dm',
      spec: {
        inspectionImageURL: 'http://127.0.0.1/i',
        targetImageURL: 'http://127.0.0.1/t',
        targetImageDigest: `sha256:${'a'.repeat(64)}`,
      },
    });
    await t.resolves(
      row.locator('.state', { hasText: 'Provisioned' }).waitFor({ timeout: 20_000 }),
      'host turns Provisioned live',
    );

    // the host's page: report, events, the waterfall of its boot
    await row.click();
    await page.waitForSelector('h2:has-text("Host dash1")');
    await t.resolves(page.locator('dd', { hasText: '1 sockets, 4 cores, 8 threads' }).waitFor(), 'the v1.0 report');
    t.equal(
      await page.locator('dt:has-text("Boot chain") + dd').textContent(),
      'Auto',
      'the boot chain (no Secure Boot state from this BMC)',
    );
    const lanes = async () =>
      page.locator('svg.wf rect.bar').evaluateAll((rs) => [...new Set(rs.map((r) => r.getAttribute('data-stage')))]);
    await until('the waterfall has its lanes', async () => {
      const got = await lanes();
      return ['power', 'script', 'report', 'provisioned'].every((l) => got.includes(l)) ? got : undefined;
    });
    t.match(await page.locator('.slowest').first().textContent(), /^Slowest step: \S+/, 'the slowest step named');
    t.ok(await page.locator('#events td', { hasText: /^Provisioned$/ }).count(), 'the events under the host');
    t.comment(`screenshot: ${await shot(page, 'host')}`);

    // an action from the page, and its event under the host
    await page.click('#actions button[data-action="powerOff"]');
    await t.resolves(page.locator('#answer .note', { hasText: 'powerOff done, power Off' }).waitFor(), 'power off');
    t.equal(bmc.power, 'Off');
    await t.resolves(page.locator('#events td', { hasText: /^HostAction$/ }).waitFor(), 'its event shows up');

    // a MAC that is no host: what it asked for, on the same waterfall
    await fetch(`${base}/boot/host.ipxe?mac=52-54-00-de-ad-01`);
    await page.click('a[href="#/boots"]');
    await page.locator('#macs a', { hasText: '52:54:00:de:ad:01' }).click();
    await t.resolves(
      page.locator('svg.wf rect.bar[data-stage="script"]').waitFor(),
      'an unknown MAC has its waterfall',
    );

    // the fleet: counts and power-on → provisioned durations
    await page.click('a[href="#/"]');
    await t.resolves(page.locator('#machine-phases .chip.Provisioned').waitFor(), 'machine phases counted');
    t.match(await page.locator('#durations').textContent(), /^median \S+ (ms|s) · p90 \S+ (ms|s) · slowest/);
    t.match(
      await page.locator('#slowest tr').nth(1).textContent(),
      /^dmdash1/,
      'the slowest machine and its host, linked',
    );
    t.comment(`screenshot: ${await shot(page, 'fleet')}`);

    // apply: each document that cannot apply says why, at its field; the rest apply
    await page.click('a[href="#/apply"]');
    await page.fill(
      '#yaml',
      [
        'apiVersion: infrastructure.cluster.x-k8s.io/v1beta1\nkind: Beskar7Cluster\nmetadata:\n  name: c1\nspec:\n  controlPlaneEndpoint: {host: 192.0.2.1, port: 6443}',
        'apiVersion: infrastructure.cluster.x-k8s.io/v1beta1\nkind: Beskar7Machine\nmetadata:\n  name: old\nspec:\n  imageURL: http://x/a.iso\n  inspectionImageURL: http://x/boot\n  targetImageURL: http://x/t.tar.gz',
      ].join('\n---\n'),
    );
    await page.click('#apply');
    await t.resolves(page.locator('#results td.ok', { hasText: 'created' }).waitFor(), 'the cluster is created');
    t.match(
      await page.locator('#results li.cause').first().textContent(),
      /^spec\.imageURL: removed in v1\.0/,
      'the v0.x field refused at its field',
    );
    t.equal((await a.kube('GET', `${MACHINES}/old`)).status, 404, 'and nothing of it stored');
    t.comment(`screenshot: ${await shot(page, 'apply')}`);

    // delete a machine: the confirmation says what happens to its host
    await page.goto(`${base}/ui#/machine/default/dm`);
    await page.waitForSelector('h2:has-text("Machine dm")');
    const asked = new Promise<string>((resolve) =>
      page.once('dialog', (d) => {
        resolve(d.message());
        void d.accept();
      }),
    );
    await page.click('#delete');
    t.match(await asked, /Delete machine dm\? Its host dash1 will be powered off and released first\./);
    await until('machine gone', async () =>
      (await a.kube('GET', `${MACHINES}/dm`)).status === 404 ? true : undefined,
    );
    await page.click('a[href="#/machines"]');
    await t.resolves(page.locator('#list-count', { hasText: /^0$/ }).waitFor(), 'the list has it gone');

    // the read-only token sees everything and gets no action
    const ro = await signedIn(browser, base, READ_ONLY, 390);
    t.equal(await ro.page.locator('#role').textContent(), 'read-only');
    await ro.page.goto(`${base}/ui#/host/default/dash1`);
    await ro.page.waitForSelector('h2:has-text("Host dash1")');
    t.equal(await ro.page.locator('#actions button').count(), 0, 'no action buttons');
    t.comment(`screenshot (phone width): ${await shot(ro.page, 'host-phone-read-only')}`);
    await ro.page.goto(`${base}/ui#/apply`);
    await ro.page.waitForSelector('text=This token reads only');
    t.equal(await ro.page.locator('#apply').count(), 0, 'no apply button');

    // 1000 hosts: the list keeps only the rows in sight, and follows changes
    const rack = new FakeBmc({});
    const rackAddress = await rack.start();
    t.teardown(() => rack.stop());
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'many' },
      stringData: { username: 'admin', password: 'secret' },
    };
    t.equal((await a.kube('POST', SECRETS, secret)).status, 201);
    await page.click('a[href="#/hosts"]');
    for (let i = 0; i < 1000; i++) {
      const r = await a.kube('POST', HOSTS, {
        apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
        kind: 'PhysicalHost',
        metadata: { name: `h-${String(i).padStart(4, '0')}` },
        spec: { redfishConnection: { address: rackAddress, credentialsSecretRef: 'many', allowPlainHttp: true } },
      });
      if (r.status !== 201) t.fail(`host ${i}: ${r.status}`);
    }
    await t.resolves(page.locator('#list-count', { hasText: /^1001$/ }).waitFor(), 'all 1001 hosts arrived live');
    const rows = await page.locator('#list .vrow').count();
    t.ok(rows > 10 && rows < 80, `only the rows in sight are in the page (${rows})`);
    await page.locator('#list').evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await t.resolves(page.locator('#list .vrow', { hasText: 'h-0999' }).waitFor(), 'the last one, scrolled to');
    await page.fill('#filter', 'h-0500');
    await t.resolves(page.locator('#list-count', { hasText: '1 of 1001' }).waitFor(), 'filtered');
    t.comment(`screenshot: ${await shot(page, 'hosts-1000')}`);

    // the appliance restarts (same port, same data): the page's streams come back by themselves
    await a.stop();
    await t.resolves(page.locator('#live:not(.on)').waitFor(), 'the page shows it lost the appliance');
    const b = await inProcess(t, { http: { port: Number(new URL(base).port) } }, a.dataDir);
    await t.resolves(page.locator('#live.on').waitFor({ timeout: 20_000 }), 'and is live again');
    await page.fill('#filter', 'late');
    await addHost(b.kube, {
      name: 'late',
      spec: { redfish: { address, username: 'admin', password: 'secret', allowPlainHttp: true } },
    });
    await t.resolves(
      page.locator('#list .vrow', { hasText: 'late' }).waitFor(),
      'a host added after the restart shows',
    );
    t.same([...errors, ...ro.errors], [], 'no script errors in the pages');
  },
);
