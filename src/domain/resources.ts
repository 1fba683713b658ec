import { z } from 'zod';
import { ScriptUrl } from './boot.js';
import { MacSchema } from './mac.js';

/** Resource shapes of the Beskar7 v1.0 API: one zod definition each, types by z.infer. */

/** A resource name: a DNS label, so a name is safe in URLs, scripts, logs and terminals. */
export const ResourceName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'must be a DNS label: lower-case letters, digits and "-"');

export const DEFAULT_NAMESPACE = 'default';
/** Names are unique per namespace and kind, as in Kubernetes. */
const Namespace = ResourceName.default(DEFAULT_NAMESPACE);

/**
 * The store key of a namespaced record: `<namespace>/<name>` (a name is a DNS label: it holds no "/"). Records
 * name each other within their namespace (a machine's host, a host's consumer, a host's Secret), so a reference
 * and the referring record's namespace make the key.
 */
export const objectKey = (namespace: string, name: string): string => `${namespace}/${name}`;
export const keyOf = (o: { namespace: string; name: string }): string => objectKey(o.namespace, o.name);

export const RedfishSpecSchema = z
  .object({
    address: z.url({ protocol: /^https?$/ }).describe('BMC base URL, e.g. https://10.0.0.21'),
    username: z.string().min(1),
    password: z.string().min(1).describe('write-only; encrypted at rest, never returned'),
    insecureSkipVerify: z.boolean().default(false),
    /** plain http:// sends the BMC password in clear: only with this set */
    allowPlainHttp: z.boolean().default(false),
    caBundle: z.string().includes('BEGIN CERTIFICATE', { message: 'must be a PEM bundle' }).optional(),
    systemId: z.string().min(1).optional(),
  })
  .strict();

/**
 * What the host's UEFI firmware loads over PXE: iPXE, or the chain the distributions sign (shim, then Debian's
 * network GRUB), which firmware enforcing Secure Boot accepts and iPXE it refuses. Auto follows the BMC's
 * SecureBoot state.
 */
export const BootChain = z.enum(['Auto', 'iPXE', 'SignedGRUB']);

export const HostSpecSchema = z
  .object({
    redfish: RedfishSpecSchema,
    bootMACs: z.array(MacSchema).default([]),
    bootChain: BootChain.default('Auto'),
    labels: z.record(z.string(), z.string()).default({}),
  })
  .strict();

export const HostCreateSchema = z
  .object({ name: ResourceName, namespace: Namespace, spec: HostSpecSchema })
  .strict()
  .superRefine((h, ctx) => {
    if (h.spec.redfish.address.startsWith('http:') && !h.spec.redfish.allowPlainHttp) {
      ctx.addIssue({
        code: 'custom',
        path: ['spec', 'redfish', 'address'],
        message:
          'plain http:// sends the BMC password in clear: use https://, or set spec.redfish.allowPlainHttp: true',
      });
    }
  });
export type HostCreate = z.infer<typeof HostCreateSchema>;

export const HostState = z.enum([
  'Enrolling',
  'Available',
  'InUse',
  'Inspecting',
  'Ready',
  'Provisioned',
  /** released after a deployment: its disks are erased before it is Available again */
  'Cleaning',
  /** the erase failed or timed out: not claimed until an operator asks for cleaning again */
  'CleanFailed',
  'Error',
]);
export const InspectionPhase = z.enum(['Pending', 'Booting', 'InProgress', 'Complete', 'Failed', 'Timeout']);

export const HostStatusSchema = z.object({
  state: HostState,
  observedPowerState: z.string().optional(),
  hardwareDetails: z
    .object({ manufacturer: z.string().optional(), model: z.string().optional(), serialNumber: z.string().optional() })
    .optional(),
  uuid: z.string().optional(),
  nics: z.array(z.object({ mac: MacSchema })).default([]),
  /** the BMC's Systems/<id>/SecureBoot at enrolment (SecureBootCurrentBoot); absent when the BMC has none */
  secureBoot: z.boolean().optional(),
  inspectionPhase: InspectionPhase.optional(),
  inspectionTimestamp: z.string().optional(),
  /** key of the latest report in the reports collection */
  inspectionReportId: z.string().optional(),
  errorMessage: z.string().optional(),
  /** failed enrolments in a row; the next try waits longer each time */
  errorCount: z.number().int().min(0).optional(),
  /** when an Error host is enrolled again (ISO time) */
  nextRetryAt: z.string().optional(),
  consumer: z.string().optional(),
  /** its disks may hold a deployment (it passed validation): released, it is cleaned first */
  needsCleaning: z.boolean().optional(),
});

/**
 * One inspection attempt, as the store keeps it: a random id only. The boot nonce and the bearer token are
 * derived from it with the appliance's key (secret.key, never in the store or a backup), so neither is stored,
 * and the answer to the nonce can be rendered again after a restart.
 */
export const AttemptSchema = z.object({
  id: z.string(),
  expiresAt: z.string(),
  /** the boot nonce's one redemption: where from, which MAC iPXE booted from, when */
  redeemed: z.object({ from: z.string(), mac: z.string().optional(), at: z.string() }).optional(),
  /** the token was used from another address: remembered once per attempt, counted in metrics after that */
  misused: z.boolean().optional(),
  /** what the inspector is booted for: inspection and deployment (the default), or erasing the disks */
  purpose: z.literal('clean').optional(),
});
export type Attempt = z.infer<typeof AttemptSchema>;

/** A record as releases before 2026-12 stored it, with field `from` where it now has `to`. */
const renamed =
  (from: string, to: string) =>
  (v: unknown): unknown => {
    if (!v || typeof v !== 'object' || !(from in v)) return v;
    const { [from]: value, ...rest } = v as Record<string, unknown>;
    return { ...rest, [to]: value };
  };

/** A host as releases before 2026-12 stored it: `bootstrap: {attempt, expiresAt, claim}`. */
const fromLegacyHost = (v: unknown): unknown => {
  if (!v || typeof v !== 'object' || !('bootstrap' in v)) return v;
  const { bootstrap, ...rest } = v as { bootstrap?: { attempt: string; expiresAt: string; claim?: unknown } };
  if (!bootstrap) return rest;
  const { attempt: id, claim: redeemed, ...kept } = bootstrap;
  return { ...rest, attempt: { ...kept, id, ...(redeemed ? { redeemed } : {}) } };
};

/** What the store keeps: the password only as ciphertext, the attempt's credentials never. */
export const StoredHostSchema = z.preprocess(
  fromLegacyHost,
  z.object({
    name: z.string(),
    namespace: z.string().default(DEFAULT_NAMESPACE),
    spec: HostSpecSchema.extend({
      redfish: RedfishSpecSchema.omit({ password: true }).extend({
        passwordEnc: z.string(),
        /** the Secret the credentials came from (applied manifests): re-applying it updates them here */
        credentialsSecretRef: z.string().optional(),
      }),
    }),
    status: HostStatusSchema,
    attempt: AttemptSchema.optional(),
    /** metadata.annotations as applied (labels are spec.labels: host selectors match them) */
    annotations: z.record(z.string(), z.string()).optional(),
    createdAt: z.string(),
  }),
);
export type StoredHost = z.infer<typeof StoredHostSchema>;

/**
 * A Secret as applied: BMC credentials (username, password) and/or bootstrap data (`value`, as Cluster API's
 * bootstrap data secret holds it). What is secret is sealed like a host's password.
 */
export const StoredSecretSchema = z.object({
  name: z.string(),
  namespace: z.string(),
  username: z.string().optional(),
  passwordEnc: z.string().optional(),
  valueEnc: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  createdAt: z.string(),
});
export type StoredSecret = z.infer<typeof StoredSecretSchema>;

/** The v1.0 ProviderID of a host (contract v4.2: beskar7.provider-id; the machine's spec.providerID). */
export const providerId = (h: Pick<StoredHost, 'name' | 'namespace'>): string => `b7://${h.namespace}/${h.name}`;

/** The MACs a host network-boots from: the configured boot MACs, else every NIC the BMC lists. */
export const hostMacs = (h: StoredHost): string[] =>
  h.spec.bootMACs.length ? h.spec.bootMACs : h.status.nics.map((n) => n.mac);
export type HostState = z.infer<typeof HostState>;

export const HardwareRequirementsSchema = z
  .object({
    minCPUCores: z.number().int().min(0).default(0),
    // GB in these names, as in the v1.0 manifests, are GiB (2^30 bytes): the unit the inspector reports in
    minMemoryGB: z.number().min(0).default(0),
    minDiskGB: z.number().min(0).default(0),
  })
  .strict();
export type HardwareRequirements = z.infer<typeof HardwareRequirementsSchema>;

export const MachineSpecSchema = z
  .object({
    inspectionImageURL: ScriptUrl.describe(
      'an iPXE script to chain (ends in .ipxe or /boot, e.g. http://<appliance>/beskar7-inspector/boot), or a ' +
        'directory holding vmlinuz and initrd.img or initrd',
    ),
    targetImageURL: ScriptUrl,
    targetImageDigest: z
      .string()
      .regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 lower-case hex digits>')
      .optional()
      .describe('the inspector refuses to boot a target whose SHA-256 differs'),
    configurationURL: ScriptUrl.optional(),
    targetDisk: z
      .string()
      .regex(/^[A-Za-z0-9._:/+=-]+$/, "a device path such as /dev/sda, or serial=<the disk's serial number>")
      .optional()
      .describe('the disk a whole-disk image goes to (beskar7.disk); by default the smallest eligible one'),
    bootstrap: z
      .object({
        dataSecretName: ResourceName.describe(
          "a Secret in the machine's namespace whose `value` is the user-data (Cluster API's bootstrap data secret)",
        ),
      })
      .strict()
      .optional()
      .describe(
        "the user-data GET /bootstrap hands the inspector; else configurationURL's content, fetched by the appliance",
      ),
    hardwareRequirements: HardwareRequirementsSchema.optional(),
    hostSelector: z
      .object({ matchLabels: z.record(z.string(), z.string()).default({}) })
      .strict()
      .optional(),
  })
  .strict();

const StringMap = z.record(z.string(), z.string()).default({});

export const MachineCreateSchema = z
  .object({
    name: ResourceName,
    namespace: Namespace,
    labels: StringMap,
    annotations: StringMap,
    spec: MachineSpecSchema,
  })
  .strict();
export type MachineCreate = z.infer<typeof MachineCreateSchema>;

export const MachinePhase = z.enum(['Pending', 'Inspecting', 'Provisioned', 'Failed', 'Deleting']);

export const ConditionSchema = z.object({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string(),
  message: z.string().default(''),
  lastTransitionTime: z.string(),
});
export type Condition = z.infer<typeof ConditionSchema>;

export const MachineStatusSchema = z.object({
  phase: MachinePhase,
  conditions: z.array(ConditionSchema).default([]),
  /** hosts that failed this machine's requirements: not claimed again */
  rejectedHosts: z.array(z.string()).default([]),
  hostName: z.string().optional(),
  failureReason: z.string().optional(),
  failureMessage: z.string().optional(),
  /** inspection attempts so far */
  attempts: z.number().int().default(0),
  /** epoch ms: the current attempt times out then */
  inspectionDeadline: z.number().optional(),
  /** epoch ms: do not act before (backoff between attempts) */
  notBefore: z.number().optional(),
  /** the digest the appliance computed for a target without targetImageDigest, and for which URL */
  pinnedTarget: z.object({ url: z.string(), digest: z.string(), at: z.string() }).optional(),
});

export const StoredMachineSchema = z.object({
  name: z.string(),
  namespace: z.string().default(DEFAULT_NAMESPACE),
  spec: MachineSpecSchema,
  status: z.preprocess(renamed('hostId', 'hostName'), MachineStatusSchema),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  /** when deletion was asked for: the machine stays, Deleting, until its host is off and released */
  deletedAt: z.string().optional(),
  createdAt: z.string(),
});
export type StoredMachine = z.infer<typeof StoredMachineSchema>;

const GiB = z.number().nonnegative().describe('GiB (2^30 bytes), a number');

export const InspectionReportSchema = z
  .object({
    manufacturer: z.string().default(''),
    model: z.string().default(''),
    serialNumber: z.string().default(''),
    bootMode: z.enum(['UEFI', 'Legacy']),
    firmwareVersion: z.string().default(''),
    /** the firmware enforced Secure Boot when the inspector ran (absent: not reported) */
    secureBoot: z.boolean().optional(),
    /** uname -m of the inspector's kernel (absent: not reported) */
    architecture: z.string().optional(),
    cpus: z
      .object({
        count: z.number().int().min(0).describe('sockets'),
        cores: z.number().int().min(0).describe('physical cores, all sockets'),
        threads: z.number().int().min(0),
        model: z.string().default(''),
      })
      .strict()
      .refine((c) => c.threads >= c.cores, 'need cores <= threads'),
    memory: z.object({ totalGB: GiB }).strict(),
    disks: z
      .array(
        z
          .object({
            device: z.string(),
            sizeGB: GiB,
            type: z.enum(['SSD', 'HDD', 'NVMe']).optional(),
            model: z.string().default(''),
            serial: z.string().default(''),
          })
          .strict(),
      )
      .default([]),
    nics: z
      .array(
        z
          .object({
            interface: z.string(),
            macAddress: MacSchema.optional(),
            speedMbps: z.number().int().min(0).optional(),
            driver: z.string().default(''),
            ipAddresses: z.array(z.string()).default([]),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();
export type InspectionReport = z.infer<typeof InspectionReportSchema>;

export const StoredReportSchema = z.preprocess(
  renamed('hostId', 'hostName'),
  z.object({
    hostName: z.string(),
    machine: z.string().optional(),
    receivedAt: z.string(),
    report: InspectionReportSchema,
  }),
);
export type StoredReport = z.infer<typeof StoredReportSchema>;

/** The ResetType values Redfish defines; a BMC's AllowableValues are hints (some list malformed ones). */
export const ResetType = z.enum([
  'On',
  'ForceOff',
  'GracefulShutdown',
  'GracefulRestart',
  'ForceRestart',
  'Nmi',
  'ForceOn',
  'PushPowerButton',
  'PowerCycle',
]);
export type ResetType = z.infer<typeof ResetType>;

/** What an operator may ask of a host's BMC. */
export const HostActionSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('reset'), resetType: ResetType.default('ForceRestart') }).strict(),
  z.object({ action: z.literal('powerOn') }).strict(),
  z.object({ action: z.literal('powerOff') }).strict(),
  z.object({ action: z.literal('pxeOnce') }).strict(),
  /** erase the disks again: a host whose cleaning failed, or any host not held by a machine */
  z.object({ action: z.literal('clean') }).strict(),
]);
export type HostAction = z.infer<typeof HostActionSchema>;
