import { createHash } from 'node:crypto';
import { z } from 'zod';
import { MacSchema } from '../../domain/mac.js';
import { ClusterSpecSchema } from '../../domain/manifests.js';
import {
  BootChain,
  ConditionSchema,
  HostStatusSchema,
  MachineSpecSchema,
  MachineStatusSchema,
  RedfishSpecSchema,
} from '../../domain/resources.js';
import { KIND_INFO, KIND_NAMES, type KindInfo, type KindName, VERSION } from './kinds.js';

/**
 * OpenAPI v2 and v3 of the resource API, generated from the same zod schemas the API validates with: what
 * `kubectl explain` reads, and where kubectl learns that the server validates fields itself (fieldValidation).
 */
type Json = Record<string, unknown>;

const jsonSchema = (s: z.ZodType, io: 'input' | 'output' = 'input'): Json => {
  const { $schema: _, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any', target: 'openapi-3.0' }) as Json;
  return rest;
};

const obj = (properties: Record<string, Json>, description?: string): Json => ({
  type: 'object',
  ...(description ? { description } : {}),
  properties,
});
const str = (description: string): Json => ({ type: 'string', description });
const META: Json = obj({}, 'Standard object metadata: name, namespace, labels, annotations, resourceVersion, uid.');
const MachineSpecIn = MachineSpecSchema.extend({
  providerID: z.string().optional().describe('set by the appliance once provisioned'),
});

/** spec and status of each kind. */
function shapes(k: KindName): { spec?: Json; status?: Json; extra?: Record<string, Json> } {
  switch (k) {
    case 'PhysicalHost':
      return {
        spec: obj(
          {
            redfishConnection: jsonSchema(
              RedfishSpecSchema.omit({ username: true, password: true }).extend({
                credentialsSecretRef: z.string().describe('a Secret in the same namespace with username and password'),
              }),
            ),
            bootMACs: jsonSchema(z.array(MacSchema)),
            bootChain: jsonSchema(BootChain),
            consumerRef: obj(
              { kind: str('Beskar7Machine'), name: str('the machine'), namespace: str('its namespace') },
              'set by the appliance',
            ),
          },
          'the BMC and the MACs the host network-boots from',
        ),
        status: jsonSchema(HostStatusSchema, 'output'),
      };
    case 'Beskar7Machine':
      return { spec: jsonSchema(MachineSpecIn), status: jsonSchema(MachineStatusSchema, 'output') };
    case 'Beskar7Cluster':
      return {
        spec: jsonSchema(ClusterSpecSchema),
        status: obj({
          ready: { type: 'boolean' },
          conditions: { type: 'array', items: jsonSchema(ConditionSchema, 'output') },
        }),
      };
    case 'Beskar7MachineTemplate':
      return { spec: obj({ template: obj({ metadata: META, spec: jsonSchema(MachineSpecSchema) }) }) };
    case 'Secret':
      return {
        extra: {
          type: str('Opaque'),
          data: {
            type: 'object',
            additionalProperties: { type: 'string', format: 'byte' },
            description: 'base64 values',
          },
          stringData: {
            type: 'object',
            additionalProperties: { type: 'string' },
            description: 'username and password of a BMC',
          },
        },
      };
    case 'Namespace':
      return {
        spec: obj({ finalizers: { type: 'array', items: { type: 'string' } } }),
        status: obj({ phase: str('Active') }),
      };
    case 'Event':
      return {
        extra: {
          involvedObject: obj({ kind: str(''), name: str(''), namespace: str(''), uid: str(''), apiVersion: str('') }),
          reason: str('the workflow event kind'),
          message: str(''),
          type: str('Normal or Warning'),
          firstTimestamp: str(''),
          lastTimestamp: str(''),
          count: { type: 'integer' },
        },
      };
  }
}

const defName = (i: KindInfo) =>
  i.group ? `io.x-k8s.cluster.infrastructure.${i.version}.${i.kind}` : `io.k8s.api.core.v1.${i.kind}`;

function definition(k: KindName): Json {
  const i: KindInfo = KIND_INFO[k];
  const s = shapes(k);
  return {
    ...obj(
      {
        apiVersion: str('APIVersion defines the versioned schema of this representation of an object.'),
        kind: str('Kind is a string value representing the REST resource this object represents.'),
        metadata: META,
        ...(s.spec ? { spec: s.spec } : {}),
        ...(s.status ? { status: s.status } : {}),
        ...(s.extra ?? {}),
      },
      `${i.kind}: served by the Beskar7 appliance.`,
    ),
    'x-kubernetes-group-version-kind': [{ group: i.group, version: i.version, kind: i.kind }],
  };
}

const gvPath = (i: KindInfo) => (i.group ? `apis/${i.group}/${i.version}` : `api/${i.version}`);

/** The operations of one kind; PATCH and POST say they take fieldValidation, so kubectl leaves validation to us. */
function paths(i: KindInfo, v2: boolean, ref: string): Json {
  const gvk = { group: i.group, version: i.version, kind: i.kind };
  const body = v2 ? { schema: { $ref: ref } } : { content: { 'application/json': { schema: { $ref: ref } } } };
  const q = (name: string) =>
    v2 ? { name, in: 'query', type: 'string' } : { name, in: 'query', schema: { type: 'string' } };
  const op = (action: string, extra: Json = {}) => ({
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': gvk,
    operationId: `${action}${i.kind}`,
    responses: { 200: { description: 'OK', ...body } },
    ...extra,
  });
  const writes = i.verbs.includes('create');
  const base = i.namespaced ? `/${gvPath(i)}/namespaces/{namespace}/${i.plural}` : `/${gvPath(i)}/${i.plural}`;
  return {
    [base]: {
      get: op('list'),
      ...(writes ? { post: op('post', { parameters: [q('fieldValidation'), q('fieldManager')] }) } : {}),
    },
    [`${base}/{name}`]: {
      get: op('get'),
      ...(writes
        ? {
            put: op('put', { parameters: [q('fieldValidation'), q('fieldManager')] }),
            patch: op('patch', { parameters: [q('fieldValidation'), q('fieldManager'), q('force')] }),
            delete: op('delete'),
          }
        : {}),
    },
  };
}

const INFO = { title: 'Beskar7 appliance', version: VERSION };

export function openApiV2(): Json {
  const definitions: Json = {};
  let all: Json = {};
  for (const k of KIND_NAMES) {
    const i: KindInfo = KIND_INFO[k];
    definitions[defName(i)] = toV2(definition(k));
    all = { ...all, ...paths(i, true, `#/definitions/${defName(i)}`) };
  }
  return { swagger: '2.0', info: INFO, paths: all, definitions };
}

/** Swagger 2 has no nullable, anyOf or const: those become what v2 can say. */
function toV2(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(toV2);
  if (!s || typeof s !== 'object') return s;
  const o = { ...(s as Json) };
  delete o.nullable;
  if (o.const !== undefined) {
    o.enum = [o.const];
    delete o.const;
  }
  for (const k of ['anyOf', 'oneOf', 'allOf']) {
    if (Array.isArray(o[k])) {
      delete o[k];
      if (!o.type) o.type = 'object';
    }
  }
  for (const [k, v] of Object.entries(o)) if (k !== 'x-kubernetes-group-version-kind') o[k] = toV2(v);
  return o;
}

/**
 * kubectl asks for OpenAPI v2 only as protobuf (gnostic's Document), to validate kinds the server does not
 * validate itself. This server validates every kind it serves (fieldValidation), so the protobuf document is
 * empty but for its version and title: kubectl then has no schema to check against and leaves it to us, and a
 * kind nobody serves fails at kubectl's mapping ("no matches for kind"), as against any API server.
 */
export function openApiV2Protobuf(): Buffer {
  const field = (n: number, v: Buffer) => Buffer.concat([Buffer.from([(n << 3) | 2, v.length]), v]);
  const text = (n: number, s: string) => field(n, Buffer.from(s));
  return Buffer.concat([text(1, '2.0'), field(2, Buffer.concat([text(1, INFO.title), text(2, INFO.version)]))]);
}

/**
 * kubectl learns whether the server validates a kind it does not know (a Cluster API Cluster in a Beskar7
 * example) from the CustomResourceDefinition operations: this says it does, so such a document is not
 * validated against a schema that is not there and fails with "no matches for kind" instead.
 */
const CRD_GV = 'apis/apiextensions.k8s.io/v1';
function crdDocument(): Json {
  const gvk = { group: 'apiextensions.k8s.io', version: 'v1', kind: 'CustomResourceDefinition' };
  const patch = {
    'x-kubernetes-action': 'patch',
    'x-kubernetes-group-version-kind': gvk,
    parameters: [{ name: 'fieldValidation', in: 'query', schema: { type: 'string' } }],
    responses: { 404: { description: 'no CustomResourceDefinitions are served here' } },
  };
  return { openapi: '3.0.0', info: INFO, paths: { [`/${CRD_GV}/customresourcedefinitions/{name}`]: { patch } } };
}

/** The v3 document of one group version (`api/v1` or `apis/<group>/<version>`). */
export function openApiV3(gv: string): Json | undefined {
  if (gv === CRD_GV) return crdDocument();
  const inGv = KIND_NAMES.filter((k) => gvPath(KIND_INFO[k]) === gv);
  if (!inGv.length) return undefined;
  const schemas: Json = {};
  let all: Json = {};
  for (const k of inGv) {
    const i: KindInfo = KIND_INFO[k];
    schemas[defName(i)] = definition(k);
    all = { ...all, ...paths(i, false, `#/components/schemas/${defName(i)}`) };
  }
  return { openapi: '3.0.0', info: INFO, paths: all, components: { schemas } };
}

export function openApiRoot(): Json {
  const gvs = [...new Set(KIND_NAMES.map((k) => gvPath(KIND_INFO[k]))), CRD_GV];
  return {
    paths: Object.fromEntries(
      gvs.map((gv) => {
        const hash = createHash('sha256')
          .update(JSON.stringify(openApiV3(gv)))
          .digest('hex')
          .slice(0, 32)
          .toUpperCase();
        return [gv, { serverRelativeURL: `/openapi/v3/${gv}?hash=${hash}` }];
      }),
    ),
  };
}
