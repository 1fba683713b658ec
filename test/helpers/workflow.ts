import type { Test } from 'tap';
import { FakeBmc, type Personality } from '../lab/fake-bmc/server.js';
import { simulateInspector, wireReport } from './sim-inspector.js';

/** A fake BMC whose power-on makes the simulated machine fetch its script and report. */
export async function bmcWithMachine(
  t: Test,
  base: () => string,
  mac: string,
  opts: {
    personality?: Personality;
    report?: Parameters<typeof simulateInspector>[2] | null;
    /** the BMC's own password (the FakeBmc default otherwise) */
    password?: string;
    /** from the power-on to the machine's first request (its POST) */
    postMs?: number;
  } = {},
) {
  const posts: number[] = [];
  const bmc = new FakeBmc({
    personality: opts.personality ?? {},
    ...(opts.password ? { password: opts.password } : {}),
    macs: [mac],
    onPower: (ev, boot) => {
      if (ev === 'off' || boot.target !== 'Pxe' || opts.report === null) return;
      setTimeout(
        () => void simulateInspector(base(), mac, opts.report ?? wireReport(mac)).then((r) => posts.push(r.status)),
        opts.postMs ?? 20,
      );
    },
  });
  const address = await bmc.start();
  t.teardown(() => bmc.stop());
  return { bmc, address, posts };
}

export const hostBody = (name: string, address: string, extra: Record<string, unknown> = {}) => ({
  name,
  spec: { redfish: { address, username: 'admin', password: 'secret', allowPlainHttp: true }, ...extra },
});
export const machineBody = (name: string, req?: Record<string, number>, extra: Record<string, unknown> = {}) => ({
  name,
  spec: {
    inspectionImageURL: 'http://127.0.0.1/assets/inspector',
    targetImageURL: 'http://127.0.0.1/assets/target.tar.gz',
    // pinned, as operators should: a target without a digest is fetched and hashed by the appliance first
    targetImageDigest: `sha256:${'a'.repeat(64)}`,
    ...(req ? { hardwareRequirements: req } : {}),
    ...extra,
  },
});

/** A machine's conditions as TYPE=STATUS, in the order they were first set. */
export const conditionsOf = (m: { status: { conditions: { type: string; status: string }[] } }) =>
  m.status.conditions.map((c) => `${c.type}=${c.status}`);

/** What a machine provisioned with a pinned target digest has been through. */
export const PROVISIONED = ['HostClaimed=True', 'InspectionComplete=True', 'RequirementsMet=True', 'Provisioned=True'];
