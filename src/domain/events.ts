import { z } from 'zod';

/** Every kind of workflow event; a new kind is added here, so the timeline, CLI and dashboard know them all. */
export const EventKind = z.enum([
  'HostCreated',
  'HostUpdated',
  'HostDeleted',
  'Enrolled',
  'EnrolFailed',
  'MachineCreated',
  'MachineUpdated',
  'MachineDeleting',
  'Claimed',
  'InspectionStarted',
  /** an attempt whose boot an earlier leader or process may have started: booted again, new credentials */
  'InspectionResumed',
  'PowerOn',
  /** stored by releases before the boot nonce; still read */
  'ScriptFetched',
  'CredentialClaimed',
  'CredentialConflict',
  'CredentialMisuse',
  /** the appliance computed the digest of a target the machine pins none for */
  'TargetPinned',
  'ReportReceived',
  'ReportRejected',
  'InspectorStep',
  'InspectorFailed',
  'Ready',
  'RequirementsNotMet',
  'Provisioned',
  'ProvisionFailed',
  'Retry',
  'Failed',
  'ReleaseFailed',
  'CleaningStarted',
  'Cleaned',
  'CleanFailed',
  'HostActionRequested',
  'HostAction',
  'HostActionFailed',
  'Deleted',
]);
export type EventKind = z.infer<typeof EventKind>;

/** info: the workflow moved on; warning: something failed and will be retried or needs a look; error: given up. */
export const Severity = z.enum(['info', 'warning', 'error']);
export type Severity = z.infer<typeof Severity>;

export const EventSchema = z.object({
  at: z.string(),
  kind: EventKind,
  // events stored before severity existed were all written as progress
  severity: Severity.default('info'),
  /** the namespace of the host and machine named (events stored before namespaces scoped names have none: default) */
  namespace: z.string().optional(),
  host: z.string().optional(),
  machine: z.string().optional(),
  mac: z.string().optional(),
  message: z.string(),
  /** the stored effect whose outcome this event tells */
  effect: z.string().optional(),
});
export type StoreEvent = z.infer<typeof EventSchema>;
/** An event as a transition produces it; the store stamps the time. */
export type WorkflowEvent = Omit<StoreEvent, 'at'>;

export const eventOk = (e: Pick<StoreEvent, 'severity'>): boolean => e.severity === 'info';
