import { createHash } from 'node:crypto';
import { z } from 'zod';
import { MacSchema } from './mac.js';
import {
  BootChain,
  DEFAULT_NAMESPACE,
  MachineSpecSchema,
  providerId,
  RedfishSpecSchema,
  ResourceName,
  type StoredHost,
  type StoredMachine,
  type StoredReport,
} from './resources.js';

/**
 * Beskar7 v1.0 manifests (`kubectl apply` shapes) at the edge: what the CLI applies and `get -o yaml` prints.
 * Inside, the appliance keeps its own records; these schemas convert both ways.
 */
export const API_VERSION = 'infrastructure.cluster.x-k8s.io/v1beta1';

const Labels = z.record(z.string().max(317), z.string().max(63)).default({});

/**
 * Read-only fields a `get -o yaml` round trip carries back (and what Cluster API controllers set) are accepted
 * and ignored, like an API server does.
 */
export const MetadataSchema = z
  .object({
    name: ResourceName,
    namespace: ResourceName.default(DEFAULT_NAMESPACE),
    labels: Labels,
    annotations: z.record(z.string(), z.string()).default({}),
    /** optimistic concurrency: an update naming another version than the stored one gets 409 */
    resourceVersion: z.string().optional(),
    creationTimestamp: z.string().nullish(),
    uid: z.string().optional(),
    generation: z.number().optional(),
    finalizers: z.array(z.string()).optional(),
    deletionTimestamp: z.string().optional(),
    deletionGracePeriodSeconds: z.number().optional(),
    ownerReferences: z.array(z.record(z.string(), z.unknown())).optional(),
    managedFields: z.array(z.unknown()).optional(),
    selfLink: z.string().optional(),
  })
  .strict();
export type Metadata = z.output<typeof MetadataSchema>;

/** The same metadata for a kind without a namespace (Namespace). */
export const ClusterMetadataSchema = MetadataSchema.omit({ namespace: true }).extend({
  namespace: z.literal('').optional(),
});

/** What v1.0 removed from Beskar7Machine.spec, with what replaces each: a 400 says it. */
export const REMOVED_MACHINE_FIELDS: Record<string, string> = {
  imageURL: 'removed in v1.0 (it was the ISO for VirtualMedia): use targetImageURL, the OS image the inspector boots',
  configURL: 'removed in v1.0: use configurationURL, which reaches the OS as config_url= on its command line',
  osFamily: 'removed in v1.0: the target image determines the OS',
  provisioningMode: 'removed in v1.0: provisioning is iPXE + inspection only; drop the field',
  bootMode: 'removed in v1.0: the inspector reports the boot mode it finds (bootModeDetected)',
};

const removedFields = (spec: unknown, ctx: z.RefinementCtx) => {
  if (typeof spec !== 'object' || spec === null) return;
  for (const [k, why] of Object.entries(REMOVED_MACHINE_FIELDS)) {
    if (k in spec) ctx.addIssue({ code: 'custom', path: [k], message: why });
  }
};

export const SecretManifestSchema = z
  .object({
    apiVersion: z.literal('v1'),
    kind: z.literal('Secret'),
    metadata: MetadataSchema,
    type: z.string().optional(),
    /** base64 values, as Kubernetes writes them */
    data: z.record(z.string(), z.base64()).optional(),
    stringData: z.record(z.string(), z.string()).optional(),
  })
  .strict()
  .transform((s, ctx) => {
    const get = (k: string) =>
      s.stringData?.[k] ?? (s.data?.[k] !== undefined ? Buffer.from(s.data[k], 'base64').toString('utf8') : undefined);
    const [username, password, value] = [get('username'), get('password'), get('value')];
    if ((!username || !password) && value === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['stringData'],
        message: 'a Secret here holds BMC credentials (username and password) or bootstrap data (value)',
      });
      return z.NEVER;
    }
    const credentials = username && password ? { username, password } : {};
    return {
      name: s.metadata.name,
      namespace: s.metadata.namespace,
      ...credentials,
      ...(value !== undefined ? { value } : {}),
      metadata: s.metadata,
    };
  });
export type SecretManifest = z.output<typeof SecretManifestSchema>;

export const PhysicalHostManifestSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('PhysicalHost'),
    metadata: MetadataSchema,
    spec: z
      .object({
        redfishConnection: RedfishSpecSchema.omit({ username: true, password: true })
          .extend({
            /** a Secret (kind: Secret, same namespace) with username and password */
            credentialsSecretRef: ResourceName,
          })
          .strict(),
        bootMACs: z.array(MacSchema).default([]),
        /** ours, not Beskar7's: iPXE, or shim and Debian's signed GRUB for Secure Boot (Auto: as the BMC says) */
        bootChain: BootChain.default('Auto'),
        /** set by the appliance when a machine claims the host */
        consumerRef: z.unknown().optional(),
      })
      .strict(),
    status: z.unknown().optional(),
  })
  .strict();
export type PhysicalHostManifest = z.output<typeof PhysicalHostManifestSchema>;

export const MachineManifestSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('Beskar7Machine'),
    metadata: MetadataSchema,
    spec: z
      .unknown()
      .superRefine(removedFields)
      .pipe(
        MachineSpecSchema.extend({
          /** set by the appliance once provisioned: accepted back when it is that value */
          providerID: z.string().optional(),
        }),
      ),
    status: z.unknown().optional(),
  })
  .strict();
export type MachineManifest = z.output<typeof MachineManifestSchema>;

/** Beskar7Cluster: where the workload cluster's API is; ready once that endpoint is set. */
export const ClusterSpecSchema = z
  .object({
    controlPlaneEndpoint: z
      .object({ host: z.string().min(1).max(512), port: z.number().int().min(1).max(65535) })
      .strict()
      .optional(),
  })
  .strict();

export const ClusterManifestSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('Beskar7Cluster'),
    metadata: MetadataSchema,
    spec: ClusterSpecSchema.default({}),
    status: z.unknown().optional(),
  })
  .strict();

/** Beskar7MachineTemplate: the spec Cluster API stamps Beskar7Machines from. */
export const MachineTemplateManifestSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('Beskar7MachineTemplate'),
    metadata: MetadataSchema,
    spec: z
      .object({
        template: z
          .object({
            metadata: z
              .object({ labels: Labels.optional(), annotations: z.record(z.string(), z.string()).optional() })
              .strict()
              .optional(),
            spec: z.unknown().superRefine(removedFields).pipe(MachineSpecSchema),
          })
          .strict(),
      })
      .strict(),
    status: z.unknown().optional(),
  })
  .strict();

export const NamespaceManifestSchema = z
  .object({
    apiVersion: z.literal('v1'),
    kind: z.literal('Namespace'),
    metadata: ClusterMetadataSchema,
    spec: z
      .object({ finalizers: z.array(z.string()).optional() })
      .strict()
      .optional(),
    status: z.unknown().optional(),
  })
  .strict();

/** What the store keeps of a kind the workflow does not act on: its metadata and spec, as applied. */
export const StoredObjectSchema = z.object({
  name: z.string(),
  namespace: z.string(),
  labels: z.record(z.string(), z.string()).default({}),
  annotations: z.record(z.string(), z.string()).default({}),
  spec: z.record(z.string(), z.unknown()).default({}),
  createdAt: z.string(),
});
export type StoredObject = z.infer<typeof StoredObjectSchema>;

/** A stable uid for a record that never stored one: derived from what identifies it, creation time included. */
export function uidOf(kind: string, r: { namespace: string; name: string; createdAt: string }): string {
  const h = createHash('sha256').update(`${kind}/${r.namespace}/${r.name}/${r.createdAt}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** An opaque version of a stored record: any change to it (spec or status) is a new version. */
export const resourceVersion = (record: unknown): string =>
  createHash('sha256').update(JSON.stringify(record)).digest('hex').slice(0, 16);

/** The record's part of a resourceVersion the API handed out (`<watch position>.<record version>`). */
export const recordVersion = (rv: string): string => rv.slice(rv.lastIndexOf('.') + 1);

/** Finalizer a machine carries while it exists: it goes when its host is off and released. */
export const MACHINE_FINALIZER = 'beskar7machine.infrastructure.cluster.x-k8s.io';

export const metadata = (
  kind: string,
  r: { name: string; namespace: string; createdAt: string; annotations?: Record<string, string> },
  labels: Record<string, string>,
) => ({
  name: r.name,
  namespace: r.namespace,
  uid: uidOf(kind, r),
  labels,
  annotations: r.annotations ?? {},
  resourceVersion: resourceVersion(r),
  creationTimestamp: r.createdAt,
});

/** The addresses its NICs had when the report was taken. */
export const reportedAddresses = (report: StoredReport | undefined): string[] =>
  report?.report.nics.flatMap((n) => n.ipAddresses ?? []) ?? [];

/** A host's addresses as its manifest and its machine's show them: those it holds now, then those reported. */
export const hostAddresses = (leased: string[], reported: string[]): { type: 'InternalIP'; address: string }[] =>
  [...new Set([...leased, ...reported])].map((address) => ({ type: 'InternalIP', address }));

/** A host as v1.0 shows it: the report embedded in the v1.0 shape (richer detail beside it), IPs as addresses. */
export function hostManifest(h: StoredHost, report: StoredReport | undefined, leased: string[]) {
  const { passwordEnc: _, username: __, credentialsSecretRef, ...redfish } = h.spec.redfish;
  const { inspectionReportId: ___, consumer, ...status } = h.status;
  return {
    apiVersion: API_VERSION,
    kind: 'PhysicalHost',
    metadata: metadata('PhysicalHost', h, h.spec.labels),
    spec: {
      redfishConnection: { ...redfish, ...(credentialsSecretRef ? { credentialsSecretRef } : {}) },
      bootMACs: h.spec.bootMACs,
      bootChain: h.spec.bootChain,
      ...(consumer ? { consumerRef: { kind: 'Beskar7Machine', namespace: h.namespace, name: consumer } } : {}),
    },
    status: {
      ...status,
      ...(report ? { inspectionReport: { timestamp: report.receivedAt, ...report.report } } : {}),
      addresses: hostAddresses(leased, reportedAddresses(report)),
    },
  };
}

/** A machine's providerID: its host's, once provisioned there. */
export const providerIdOf = (m: StoredMachine, host: StoredHost | undefined): string | undefined =>
  m.status.phase === 'Provisioned' && host ? providerId(host) : undefined;

export function machineManifest(
  m: StoredMachine,
  host: StoredHost | undefined,
  addresses: ReturnType<typeof hostAddresses>,
) {
  const { inspectionDeadline: _, notBefore: __, ...status } = m.status;
  const providerID = providerIdOf(m, host);
  return {
    apiVersion: API_VERSION,
    kind: 'Beskar7Machine',
    metadata: {
      ...metadata('Beskar7Machine', m, m.labels ?? {}),
      finalizers: [MACHINE_FINALIZER],
      ...(m.deletedAt ? { deletionTimestamp: m.deletedAt } : {}),
    },
    // CAPI reads spec.providerID; v1.0 also shows it in status
    spec: { ...m.spec, ...(providerID ? { providerID } : {}) },
    status: {
      ...status,
      ...(providerID ? { providerID } : {}),
      ready: m.status.phase === 'Provisioned',
      ...(m.status.hostName
        ? { hostRef: { kind: 'PhysicalHost', namespace: m.namespace, name: m.status.hostName } }
        : {}),
      addresses,
    },
  };
}
