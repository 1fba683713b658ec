import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';
import { repoRoot } from '../../src/paths.js';
import { ApplianceProcess } from '../lab/appliance-process.js';
import { labRedfish, startLabBmc } from '../lab/lab-api.js';
import { Lab } from '../lab/netns.js';
import { until } from './appliance.js';
import { addHost, HOSTS, type Request } from './resources.js';
import { tempDir } from './tmp.js';

export const demoKernel = path.join(repoRoot, 'assets/demo/vmlinuz');
export const demoInitrd = path.join(repoRoot, 'assets/demo/initrd.gz');
export const haveDemoImage = existsSync(demoKernel) && existsSync(demoInitrd);

/**
 * Why an e2e test cannot run here, as tap's skip reason; under CI (CI=true), where `make test` has installed
 * and built everything, a missing part is a failure, not a quiet skip: the test runs and fails on it.
 */
export const skipUnlessCi = (missing: boolean, why: string): string | false =>
  missing && !process.env.CI ? why : false;

let labCount = 0;

/** A lab namespace with router advertisements (unless the appliance sends its own), torn down when the test ends. */
export function makeLab(t: Test, prefix = '10.77.0', routerAdverts = true): Lab {
  const lab = new Lab(`b7t${process.pid % 10000}x${labCount++}`, prefix).up();
  t.teardown(() => lab.down());
  if (routerAdverts) lab.startRouterAdvertisements();
  return lab;
}

/** Appliance config for a lab: real ports inside the namespace, unknown hosts boot the demo image. */
export function labConfig(lab: Lab, dataDir: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const http = `http://${lab.serverIp}:8080`;
  return {
    dataDir,
    logLevel: 'debug',
    advertiseAddress: lab.serverIp,
    http: { address: lab.serverIp, port: 8080 },
    tftp: { address: '0.0.0.0', port: 69 },
    unknownHosts: {
      script: 'discover',
      kernelURL: `${http}/assets/demo/vmlinuz`,
      initrdURL: `${http}/assets/demo/initrd.gz`,
      cmdline: 'console=ttyS0 panic=-1 quiet',
    },
    ...over,
  };
}

export async function startAppliance(t: Test, lab: Lab, over: Record<string, unknown> = {}): Promise<ApplianceProcess> {
  const dir = tempDir(t);
  const app = new ApplianceProcess(lab, labConfig(lab, path.join(dir, 'data'), over), dir);
  await app.start();
  t.teardown(() => app.stop());
  return app;
}

export const fullDhcp = (lab: Lab, extra: Record<string, unknown> = {}) => ({
  dhcp: {
    mode: 'full',
    interface: 'br0',
    probeSeconds: 1, // nothing else serves DHCP in these labs; the probe test sets its own
    full: {
      poolStart: `${lab.prefix}.100`,
      poolEnd: `${lab.prefix}.199`,
      router: lab.serverIp,
      leaseSeconds: 600,
      ...extra,
    },
  },
});

/** The site's own DHCP server for proxy-mode tests: busybox udhcpd on a separate lab host. */
export function startSiteDhcp(t: Test, lab: Lab): { ip: string } {
  const ip = `${lab.prefix}.2`;
  const host = lab.addHost('site', '52:54:00:5e:00:02', ip);
  const dir = tempDir(t);
  const conf = path.join(dir, 'udhcpd.conf');
  writeFileSync(
    conf,
    [
      `start ${lab.prefix}.100`,
      `end ${lab.prefix}.199`,
      'interface eth0',
      `lease_file ${dir}/leases`,
      `pidfile ${dir}/pid`,
      'opt subnet 255.255.255.0',
      `opt router ${ip}`,
      'opt lease 600',
      '',
    ].join('\n'),
  );
  writeFileSync(path.join(dir, 'leases'), '');
  lab.spawn(host, 'busybox', ['udhcpd', '-f', conf]);
  return { ip };
}

/**
 * The appliance for QEMU machines behind fake BMCs (lab-api.ts): full DHCP, unknown hosts told to exit, the
 * admin token given, and the workflow's waits sized for TCG machines.
 */
export const startForQemuHosts = (t: Test, lab: Lab, adminToken: string, over: Record<string, unknown> = {}) =>
  startAppliance(t, lab, {
    ...fullDhcp(lab),
    unknownHosts: { script: 'exit' },
    api: { adminToken },
    orchestrator: { tickSeconds: 1, inspectionTimeoutSeconds: 400, powerDeadlineSeconds: 30, retryBaseSeconds: 5 },
    redfish: { timeoutSeconds: 10, retries: 3, backoffBaseSeconds: 0.5, backoffMaxSeconds: 5 },
    ...over,
  });

/**
 * A QEMU machine behind a fake BMC of its own on `port`, enrolled as PhysicalHost `name`; resolves with the host
 * once it is Available.
 */
export async function enrolQemuHost(
  lab: Lab,
  kube: Request,
  o: {
    name: string;
    port: number;
    consoleLog: string;
    machine: Record<string, unknown>;
    labels?: Record<string, string>;
  },
): Promise<any> {
  await startLabBmc(lab, { address: lab.serverIp, port: o.port, consoleLog: o.consoleLog, machine: o.machine });
  await addHost(kube, {
    name: o.name,
    spec: { redfish: labRedfish(lab, o.port), ...(o.labels ? { labels: o.labels } : {}) },
  });
  return until(`${o.name} Available`, async () => {
    const h = (await kube('GET', `${HOSTS}/${o.name}`)).json;
    return h.status.state === 'Available' ? h : undefined;
  });
}

/**
 * A machine spec that inspects with the bundled inspector and kexecs a demo target the appliance hosts
 * (`assets/demo/...`), pinned to the file's digest, with requirements every lab machine meets.
 */
export const demoMachineSpec = (lab: Lab, target = 'demo/target.tar.gz') => {
  const http = `http://${lab.serverIp}:8080`;
  const digest = createHash('sha256')
    .update(readFileSync(path.join(repoRoot, 'assets', target)))
    .digest('hex');
  return {
    inspectionImageURL: `${http}/assets/inspector`,
    targetImageURL: `${http}/assets/${target}`,
    targetImageDigest: `sha256:${digest}`,
    hardwareRequirements: { minCPUCores: 1, minMemoryGB: 1, minDiskGB: 1 },
  };
};
