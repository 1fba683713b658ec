import { type Context, Hono } from 'hono';
import type { z } from 'zod';
import {
  hostManifest,
  MachineManifestSchema,
  machineManifest,
  PhysicalHostManifestSchema,
  resourceVersion,
  SecretManifestSchema,
} from '../domain/manifests.js';
import { hostMacs, type StoredHost, type StoredMachine } from '../domain/resources.js';
import { bad, bodyCap, parseBody, statusOf } from '../net/respond.js';
import type { ApiDeps } from './api.js';

/**
 * Beskar7 v1.0 resources under /api/v1: PUT applies a manifest (created, configured or unchanged), GET returns
 * it with metadata and status, DELETE deletes it. What `beskar7 apply/get/describe/delete` talks to.
 */
export function createManifestApi(d: ApiDeps): Hono {
  const api = new Hono();
  const limit = bodyCap(d);

  /** The manifest, parsed; its metadata.name must be the URL's. */
  async function manifest<S extends z.ZodType>(c: Context, schema: S) {
    const r = await parseBody(c, schema);
    if (!r.ok) return { res: r.res };
    const name = (r.data as { metadata: { name: string } }).metadata.name;
    if (name !== c.req.param('name'))
      return { res: bad(c, 400, `metadata.name ${name} is not ${c.req.param('name')}`) };
    return { data: r.data as z.output<S> };
  }

  const hostView = async (h: StoredHost) => {
    const id = h.status.inspectionReportId;
    return hostManifest(h, id ? await d.store.reports.get(id) : undefined, d.leasedAddresses(hostMacs(h)));
  };
  const machineView = async (m: StoredMachine) => {
    const h = m.status.hostName ? await d.store.hosts.get(m.status.hostName) : undefined;
    const held = h && h.status.consumer === m.name ? (await hostView(h)).status.addresses.map((a) => a.address) : [];
    return machineManifest(m, h, held);
  };

  api.put('/physicalhosts/:name', limit, async (c) => {
    const m = await manifest(c, PhysicalHostManifestSchema);
    if (!m.data) return m.res;
    const r = await d.commands.applyHost(m.data);
    if (!r.ok) return bad(c, statusOf(r.code), r.error);
    return c.json(
      { result: r.value, object: await hostView((await d.store.hosts.get(m.data.metadata.name)) as StoredHost) },
      r.value === 'created' ? 201 : 200,
    );
  });
  api.get('/physicalhosts', async (c) =>
    c.json({ items: await Promise.all((await d.store.hosts.all()).map(hostView)) }),
  );
  api.get('/physicalhosts/:name', async (c) => {
    const h = await d.store.hosts.get(c.req.param('name'));
    return h ? c.json(await hostView(h)) : bad(c, 404, `no host ${c.req.param('name')}`);
  });
  api.delete('/physicalhosts/:name', async (c) => {
    const r = await d.commands.deleteHost(c.req.param('name'));
    return r.ok ? c.body(null, 204) : bad(c, statusOf(r.code), r.error);
  });

  api.put('/beskar7machines/:name', limit, async (c) => {
    const m = await manifest(c, MachineManifestSchema);
    if (!m.data) return m.res;
    const r = await d.commands.applyMachine(m.data);
    if (!r.ok) return bad(c, statusOf(r.code), r.error);
    const stored = (await d.store.machines.get(m.data.metadata.name)) as StoredMachine;
    return c.json({ result: r.value, object: await machineView(stored) }, r.value === 'created' ? 201 : 200);
  });
  api.get('/beskar7machines', async (c) =>
    c.json({ items: await Promise.all((await d.store.machines.all()).map(machineView)) }),
  );
  api.get('/beskar7machines/:name', async (c) => {
    const m = await d.store.machines.get(c.req.param('name'));
    return m ? c.json(await machineView(m)) : bad(c, 404, `no machine ${c.req.param('name')}`);
  });
  api.delete('/beskar7machines/:name', async (c) => {
    const r = await d.commands.deleteMachine(c.req.param('name'));
    return r.ok ? c.json({ deleting: r.value }, 202) : bad(c, statusOf(r.code), r.error);
  });

  // a Secret is written, never read back: GET shows who holds it, not what it holds
  const secretView = (s: { name: string; namespace: string; createdAt: string }) => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: s.name,
      namespace: s.namespace,
      resourceVersion: resourceVersion(s),
      creationTimestamp: s.createdAt,
    },
    type: 'Opaque',
  });
  api.put('/secrets/:name', limit, async (c) => {
    const m = await manifest(c, SecretManifestSchema);
    if (!m.data) return m.res;
    const r = await d.commands.applySecret(m.data);
    if (!r.ok) return bad(c, statusOf(r.code), r.error);
    const stored = await d.store.secrets.get(m.data.name);
    return c.json({ result: r.value, object: stored && secretView(stored) }, r.value === 'created' ? 201 : 200);
  });
  api.get('/secrets', async (c) => c.json({ items: (await d.store.secrets.all()).map(secretView) }));
  api.get('/secrets/:name', async (c) => {
    const s = await d.store.secrets.get(c.req.param('name'));
    return s ? c.json(secretView(s)) : bad(c, 404, `no secret ${c.req.param('name')}`);
  });
  api.delete('/secrets/:name', async (c) => {
    const r = await d.commands.deleteSecret(c.req.param('name'));
    return r.ok ? c.body(null, 204) : bad(c, statusOf(r.code), r.error);
  });
  return api;
}
