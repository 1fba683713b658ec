// BMC work is stored with the decision that needs it and carried out by the reconciler: a host owes its
// power-off before anyone claims it, and work still stored when the appliance stops is done after the restart.
import t from 'tap';
import { inProcess, until } from '../helpers/appliance.js';
import { addHost, addMachine, HOSTS, MACHINES } from '../helpers/resources.js';
import { tempDir } from '../helpers/tmp.js';
import { bmcWithMachine, hostBody, machineBody } from '../helpers/workflow.js';

const phaseOf = async (a: Awaited<ReturnType<typeof inProcess>>, m: string) =>
  (await a.kube('GET', `${MACHINES}/${m}`)).json.status?.phase as string | undefined;

t.test('a BMC that takes 2 s to carry out a ForceOff: the next machine claims the host only after it', async (t) => {
  let base = '';
  const shared = await bmcWithMachine(t, () => base, '52:54:00:0e:00:01', { personality: { offAfterMs: 2000 } });
  const a = await inProcess(t);
  base = a.base;
  await addHost(a.kube, hostBody('shared', shared.address, { labels: { pool: 'a' } }));
  await until('shared Available', async () =>
    (await a.kube('GET', `${HOSTS}/shared`)).json.status.state === 'Available' ? true : undefined,
  );
  const pool = { hostSelector: { matchLabels: { pool: 'a' } } };
  await addMachine(a.kube, machineBody('a-big', { minCPUCores: 64, minMemoryGB: 1, minDiskGB: 1 }, pool));
  // its report fails the requirements 20 ms after the power-on, so Inspecting may pass between two polls
  await until('a-big claimed', async () =>
    ['Inspecting', 'Failed'].includes((await phaseOf(a, 'a-big')) ?? '') ? true : undefined,
  );
  await addMachine(a.kube, machineBody('b-next', undefined, pool));
  await until('a-big Failed', async () => ((await phaseOf(a, 'a-big')) === 'Failed' ? true : undefined));
  // the host is released with its power-off stored: Available, but owed to its BMC
  const effects = (await a.api('GET', '/backup')).json.collections.effects as [string, { kind: string }][];
  t.same(
    effects.map(([, e]) => e.kind),
    ['powerOff'],
    'the power-off is stored in the batch that released the host',
  );
  t.equal(await phaseOf(a, 'b-next'), 'Pending', 'b-next waits while the host owes its power-off');
  await until(
    'b-next Provisioned',
    async () => ((await phaseOf(a, 'b-next')) === 'Provisioned' ? true : undefined),
    15_000,
  );
  t.same(shared.bmc.powerLog, ['on', 'off', 'on'], "the ForceOff landed before b-next's power-on, not inside its boot");
  t.equal(shared.bmc.power, 'On', 'the provisioned machine stays on');
  t.same((await a.api('GET', '/backup')).json.collections.effects, [], 'no effect left');
});

t.test('a power-off still stored when the appliance stops is carried out after the restart', async (t) => {
  let base = '';
  const m = await bmcWithMachine(t, () => base, '52:54:00:0e:00:02');
  const dataDir = `${tempDir(t)}/data`;
  const a = await inProcess(t, {}, dataDir);
  base = a.base;
  await addHost(a.kube, hostBody('h', m.address));
  await addMachine(a.kube, machineBody('gone'));
  await until('gone Provisioned', async () => ((await phaseOf(a, 'gone')) === 'Provisioned' ? true : undefined));
  // the BMC stops answering changes: the power-off cannot be carried out
  m.bmc.p.fault = { kind: 'hang', scope: 'actions' };
  t.equal((await a.kube('DELETE', `${MACHINES}/gone`)).status, 200);
  await until('the power-off is under way', async () => (m.bmc.hanging > 0 ? true : undefined));
  t.equal(await phaseOf(a, 'gone'), 'Deleting', 'the machine stays until its host is off');
  await a.stop();
  t.equal(m.bmc.power, 'On', 'nothing was powered off before the stop');

  delete m.bmc.p.fault;
  const b = await inProcess(t, {}, dataDir);
  base = b.base;
  await until('gone deleted', async () =>
    (await b.kube('GET', `${MACHINES}/gone`)).status === 404 ? true : undefined,
  );
  t.equal(m.bmc.power, 'Off', 'the restarted appliance powered the host off');
  const h = (await b.kube('GET', `${HOSTS}/h`)).json;
  t.same([h.status.state, h.status.consumer], ['Available', undefined], 'and released it');
  t.same((await b.api('GET', '/backup')).json.collections.effects, [], 'no effect left');
});
