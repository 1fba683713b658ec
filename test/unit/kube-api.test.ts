import t from 'tap';
import type { Store } from '../../src/store/store.js';
import { ADMIN, inProcess, READ_ONLY } from '../helpers/appliance.js';

const G = '/apis/infrastructure.cluster.x-k8s.io/v1beta1/namespaces/default';
const cluster = (name: string, labels: Record<string, string> = {}, host = '192.0.2.1') => ({
  apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1',
  kind: 'Beskar7Cluster',
  metadata: { name, labels },
  spec: { controlPlaneEndpoint: { host, port: 6443 } },
});

/** The lines of a watch until `n` have arrived (or the stream ends). */
async function watchLines(url: string, token: string, n: number, accept = 'application/json') {
  const ctl = new AbortController();
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}`, Accept: accept }, signal: ctl.signal });
  const lines: any[] = [];
  let buf = '';
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  while (lines.length < n) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += Buffer.from(value).toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  }
  ctl.abort();
  return { status: res.status, lines };
}

t.test('resource API: create, conflict, patch, list pages, selectors, watch resume and 410, tokens', async (t) => {
  const a = await inProcess(t);
  const created = await a.kube('POST', `${G}/beskar7clusters`, cluster('c1', { tier: 'gold' }));
  t.equal(created.status, 201);
  t.match(created.json, { kind: 'Beskar7Cluster', status: { ready: true }, metadata: { uid: /^[0-9a-f-]{36}$/ } });
  t.match((await a.kube('POST', `${G}/beskar7clusters`, cluster('c1'))).json, { reason: 'AlreadyExists', code: 409 });
  await a.kube('POST', `${G}/beskar7clusters`, cluster('c2', { tier: 'silver' }));
  await a.kube('POST', `${G}/beskar7clusters`, cluster('c3'));

  // an update naming a version that is no longer the stored one is a Conflict; the current one goes through
  const stale = { ...created.json, spec: { controlPlaneEndpoint: { host: '192.0.2.9', port: 6443 } } };
  t.equal((await a.kube('PUT', `${G}/beskar7clusters/c1`, stale)).status, 200, 'the version read is current');
  t.match((await a.kube('PUT', `${G}/beskar7clusters/c1`, stale)).json, { reason: 'Conflict', code: 409 });

  const merge = await a.kube(
    'PATCH',
    `${G}/beskar7clusters/c2`,
    { metadata: { labels: { tier: null, zone: 'a' } } },
    undefined,
    {
      'Content-Type': 'application/merge-patch+json',
    },
  );
  t.same(merge.json.metadata.labels, { zone: 'a' }, 'merge patch: null removes a key');
  const json = await a.kube(
    'PATCH',
    `${G}/beskar7clusters/c2`,
    [{ op: 'replace', path: '/spec/controlPlaneEndpoint/port', value: 7443 }],
    undefined,
    {
      'Content-Type': 'application/json-patch+json',
    },
  );
  t.equal(json.json.spec.controlPlaneEndpoint.port, 7443, 'JSON patch');
  const badPatch = await a.kube(
    'PATCH',
    `${G}/beskar7clusters/c2`,
    [{ op: 'test', path: '/spec/nope', value: 1 }],
    undefined,
    {
      'Content-Type': 'application/json-patch+json',
    },
  );
  t.match(badPatch.json, { reason: 'Invalid', message: /the patch does not apply/ });
  const unknown = await a.kube('PATCH', `${G}/beskar7clusters/c2`, { spec: { colour: 'red' } }, undefined, {
    'Content-Type': 'application/merge-patch+json',
  });
  t.match(unknown.json.details.causes, [
    { reason: 'FieldValueUnknown', field: 'spec', message: 'unknown field "colour"' },
  ]);
  t.match((await a.kube('PUT', `${G}/beskar7clusters/c2/status`, json.json)).json, { reason: 'MethodNotAllowed' });
  t.match((await a.kube('DELETE', `${G}/beskar7clusters/c3?dryRun=All`)).json, {
    reason: 'Invalid',
    message: /dryRun/,
  });
  t.equal((await a.kube('GET', `${G}/beskar7clusters/c3`)).status, 200, 'a dry run wrote nothing');

  // pages: limit and continue walk every object once
  const p1 = (await a.kube('GET', `${G}/beskar7clusters?limit=2`)).json;
  const p2 = (await a.kube('GET', `${G}/beskar7clusters?limit=2&continue=${p1.metadata.continue}`)).json;
  t.same(
    [...p1.items, ...p2.items].map((o: any) => o.metadata.name),
    ['c1', 'c2', 'c3'],
  );
  t.notOk(p2.metadata.continue, 'the last page says so');
  t.same(
    (await a.kube('GET', `${G}/beskar7clusters?labelSelector=tier%20in%20(gold,bronze)`)).json.items.map(
      (o: any) => o.metadata.name,
    ),
    ['c1'],
  );
  t.same(
    (await a.kube('GET', `${G}/beskar7clusters?labelSelector=!tier,!zone`)).json.items.map((o: any) => o.metadata.name),
    ['c3'],
  );
  t.match((await a.kube('GET', `${G}/beskar7clusters?labelSelector=a%20in%20b`)).json, {
    reason: 'Invalid',
    message: /unable to parse requirement/,
  });
  t.match((await a.kube('GET', `${G}/beskar7clusters?fieldSelector=spec.x=1`)).json, {
    message: /field label not supported: spec\.x/,
  });

  const table = (
    await a.kube('GET', `${G}/beskar7clusters`, undefined, undefined, {
      Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io',
    })
  ).json;
  t.same(
    table.columnDefinitions.map((c: any) => c.name),
    ['Name', 'Cluster', 'Ready', 'Endpoint', 'Age'],
  );
  t.same(table.rows[0].cells.slice(0, 4), ['c1', null, true, '192.0.2.9']);

  // a watch from a list's version sees exactly the later changes; one resumed from an object's version too
  const listed = (await a.kube('GET', `${G}/beskar7clusters`)).json.metadata.resourceVersion;
  await a.kube('DELETE', `${G}/beskar7clusters/c3`);
  await a.kube('POST', `${G}/beskar7clusters`, cluster('c4'));
  const w = await watchLines(`${a.base}${G}/beskar7clusters?watch=true&resourceVersion=${listed}`, READ_ONLY, 2);
  t.same(
    w.lines.map((l) => [l.type, l.object.metadata.name]),
    [
      ['DELETED', 'c3'],
      ['ADDED', 'c4'],
    ],
  );
  const resumed = await watchLines(
    `${a.base}${G}/beskar7clusters?watch=true&resourceVersion=${w.lines[0].object.metadata.resourceVersion}`,
    READ_ONLY,
    1,
  );
  t.same(
    resumed.lines.map((l) => [l.type, l.object.metadata.name]),
    [['ADDED', 'c4']],
    'resumed after the DELETED event',
  );
  const old = await watchLines(`${a.base}${G}/beskar7clusters?watch=true&resourceVersion=00000000.1`, READ_ONLY, 1);
  t.match(
    old.lines[0],
    { type: 'ERROR', object: { code: 410, reason: 'Expired' } },
    "another process's version is gone",
  );
  const initial = await watchLines(`${a.base}${G}/beskar7clusters?watch=true&labelSelector=tier=gold`, READ_ONLY, 1);
  t.same(
    initial.lines.map((l) => [l.type, l.object.metadata.name]),
    [['ADDED', 'c1']],
    'no version: the current objects first',
  );

  // tokens: none is Unauthorized, the read-only one reads but cannot write, both as Status objects
  t.match((await a.kube('GET', `${G}/beskar7clusters`, undefined, null)).json, { kind: 'Status', code: 401 });
  t.equal((await a.kube('GET', `${G}/beskar7clusters`, undefined, READ_ONLY)).status, 200);
  t.match((await a.kube('DELETE', `${G}/beskar7clusters/c1`, undefined, READ_ONLY)).json, {
    reason: 'Forbidden',
    code: 403,
  });
  t.equal(
    (await a.api('GET', '/timeline', undefined, READ_ONLY)).status,
    200,
    'the read-only token reads the admin API too',
  );
  t.equal(
    (await a.api('POST', '/hosts/h/actions', { action: 'powerOn' }, READ_ONLY)).status,
    401,
    'and acts on no BMC there',
  );

  t.same(
    (await a.kube('GET', '/api/v1/namespaces')).json.items.map((n: any) => [n.metadata.name, n.status.phase]),
    [['default', 'Active']],
  );
  const root = (await a.kube('GET', '/openapi/v3')).json;
  const doc = (await a.kube('GET', root.paths['apis/infrastructure.cluster.x-k8s.io/v1beta1'].serverRelativeURL)).json;
  const schema = doc.components.schemas['io.x-k8s.cluster.infrastructure.v1beta1.Beskar7Machine'];
  t.ok(schema.properties.spec.properties.hardwareRequirements.properties.minCPUCores, 'schemas come from zod');
  t.match(
    doc.paths['/apis/infrastructure.cluster.x-k8s.io/v1beta1/namespaces/{namespace}/beskar7machines/{name}'].patch
      .parameters,
    [{ name: 'fieldValidation' }],
  );
});

t.test('a change made while a list is being read reaches a watch from that list', async (t) => {
  const a = await inProcess(t);
  await a.kube('POST', `${G}/beskar7clusters`, cluster('early'));
  // the list reads its records, and before it answers another client creates an object
  const clusters = (Reflect.get(a.app, 'store') as Store).clusters;
  const entries = clusters.entries.bind(clusters);
  clusters.entries = async () => {
    clusters.entries = entries;
    const read = await entries();
    t.equal((await a.kube('POST', `${G}/beskar7clusters`, cluster('late'))).status, 201);
    return read;
  };
  const listed = (await a.kube('GET', `${G}/beskar7clusters`)).json;
  t.same(
    listed.items.map((o: any) => o.metadata.name),
    ['early'],
    'the list holds what it read',
  );
  const w = await watchLines(
    `${a.base}${G}/beskar7clusters?watch=true&timeoutSeconds=5&resourceVersion=${listed.metadata.resourceVersion}`,
    READ_ONLY,
    1,
  );
  t.same(
    w.lines.map((l) => [l.type, l.object.metadata.name]),
    [['ADDED', 'late']],
    'the watch delivers what the list missed',
  );
});

t.test('a Namespace that still holds objects is not deleted; an empty one is', async (t) => {
  const a = await inProcess(t);
  const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } };
  t.equal((await a.kube('POST', '/api/v1/namespaces', ns)).status, 201);
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'join', namespace: 'team-a' },
    stringData: { value: '#cloud-config\n' },
  };
  t.equal((await a.kube('POST', '/api/v1/namespaces/team-a/secrets', secret)).status, 201);
  const refused = await a.kube('DELETE', '/api/v1/namespaces/team-a');
  t.same([refused.status, refused.json.reason], [409, 'Conflict'], 'it holds a Secret');
  t.equal((await a.kube('GET', '/api/v1/namespaces/team-a')).status, 200, 'and is still there');
  t.equal((await a.kube('DELETE', '/api/v1/namespaces/team-a/secrets/join')).status, 200);
  t.equal((await a.kube('DELETE', '/api/v1/namespaces/team-a')).status, 200, 'empty: deleted');
  t.equal((await a.kube('GET', '/api/v1/namespaces/team-a')).status, 404);
});

t.test('a manifest file applied in one request: each object applies or says why at its field', async (t) => {
  const a = await inProcess(t);
  const post = (text: string, token = ADMIN) =>
    fetch(`${a.base}/api/v1/apply`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/yaml' },
      body: text,
    });
  const file = [
    'apiVersion: infrastructure.cluster.x-k8s.io/v1beta1\nkind: Beskar7Cluster\nmetadata: {name: c1}\nspec:\n  controlPlaneEndpoint: {host: 192.0.2.1, port: 6443}',
    'apiVersion: infrastructure.cluster.x-k8s.io/v1beta1\nkind: Beskar7Machine\nmetadata: {name: old, namespace: lab}\nspec:\n  imageURL: http://x/a.iso\n  inspectionImageURL: http://x/boot\n  targetImageURL: http://x/t.tar.gz',
    'apiVersion: v1\nkind: Namespace\nmetadata: {name: lab}',
    'apiVersion: v1\nkind: Pod\nmetadata: {name: p}',
  ].join('\n---\n');
  const r = await post(file);
  t.equal(r.status, 422, 'some failed');
  const { items } = (await r.json()) as { items: any[] };
  t.same(
    items.map((i) => [i.kind, i.name, i.result ?? i.status.reason]),
    [
      ['Namespace', 'lab', 'created'],
      ['Beskar7Cluster', 'c1', 'created'],
      ['Beskar7Machine', 'old', 'Invalid'],
      ['Pod', 'p', 'BadRequest'],
    ],
    'in dependency order, each with its outcome',
  );
  t.match(items[2].status.details.causes, [{ field: 'spec.imageURL', message: /^removed in v1\.0/ }]);
  t.equal(items[2].namespace, 'lab');
  const again = await post(file.split('\n---\n')[0] as string);
  t.same([again.status, ((await again.json()) as { items: any[] }).items[0].result], [200, 'unchanged']);
  t.equal((await post('a: [unclosed')).status, 400, 'a file that does not parse');
  t.equal((await post('{}', READ_ONLY)).status, 401, 'the read-only token applies nothing');
  t.same(
    (await (
      await fetch(`${a.base}/api/v1/whoami`, { headers: { Authorization: `Bearer ${READ_ONLY}` } })
    ).json()) as unknown,
    { role: 'read-only' },
  );
});
