import { type ClaimPath, grubInspectorDir, renderGrubInspector } from '../boot/grub.js';
import { renderInspector, type Templates } from '../boot/ipxe.js';
import type { Result } from '../domain/refusal.js';
import type { InspectionReport, StoredHost, StoredMachine } from '../domain/resources.js';
import { hostMacs, InspectionReportSchema, objectKey } from '../domain/resources.js';
import type { HttpBases } from '../net/bases.js';
import { type SecretBox, sameSecret } from '../store/secrets.js';
import { type Decision, type Pipeline, type Plan, refuse } from '../workflow/pipeline.js';
import {
  cleanerParams,
  cleaningDone,
  credentialConflict,
  credentialMisuse,
  endAttempt,
  type InspectorProgress,
  inspectorParams,
  judgeRedemption,
  judgeReport,
  localDisk,
  type Policy,
  progressNoted,
  provisioned,
  provisionFailed,
  reportRefusal,
  reportRejected,
} from '../workflow/transitions.js';
import { secretUserData, userDataSource } from './user-data.js';

/** Host states of a live attempt: inspecting, validated and waiting for the provisioned callback, or cleaning. */
const LIVE_STATES = new Set(['Inspecting', 'Ready', 'Cleaning']);

/** What an unauthenticated caller learns: not whether the host exists, nor which part was wrong. */
const UNAUTHORIZED = 'unauthorized';

/** Who calls an inspector endpoint: the path's host, the bearer token, the source address. */
export interface InspectorCaller {
  namespace: string;
  name: string;
  token: string | undefined;
  from: string;
}

export interface InspectorDeps {
  pipeline: Pipeline;
  secrets: SecretBox;
  policy: Policy;
  /**
   * Base URLs by family: the claim, which iPXE fetches, is plain HTTP (iPXE trusts only the CAs built into it);
   * the inspector's callbacks (beskar7.api) HTTPS with apiHttps
   */
  bases: HttpBases;
  apiHttps: boolean;
  /** the addresses these MACs hold now: our leases (full mode), what our DHCP saw them ask for (proxy mode) */
  leasedAddresses: (macs: string[]) => string[];
  /** boot-scripts/, for the inspector's script */
  templates: Templates;
  /** beskar7.ca: the base64 PEM of the CA behind beskar7.api, when it is served over TLS */
  ca?: string | undefined;
  /** the operator's kernel arguments, after the contract's */
  kernelArgs: string;
  /** configurationURL's content for GET /bootstrap (undefined: not to be had now) */
  fetchUserData: (url: string) => Promise<string | undefined>;
}

/** The answer to a boot nonce: the inspector's script, nothing (an unknown or stale nonce), or a contested claim. */
export type Redemption = { kind: 'ok'; script: string } | { kind: 'unknown' } | { kind: 'conflict'; message: string };

/** A claim's outcome as beskar7_inspector_credentials_total counts it, over HTTP (iPXE) and TFTP (GRUB) alike. */
export const redemptionResult = (r: Result<Redemption>): 'unknown' | 'claimed' | 'conflict' =>
  !r.ok || r.value.kind === 'unknown' ? 'unknown' : r.value.kind === 'ok' ? 'claimed' : 'conflict';

/**
 * The inspector contract (v4.2) as commands: the nonce's one claim, the report, the bootstrap gate and the
 * provisioned and provision-failed callbacks. Each is one decision committed through the pipeline; a BMC
 * effect it needs (powering a released host off) is stored in the same batch.
 */
export class InspectorCommands {
  constructor(private readonly d: InspectorDeps) {}

  private get p(): Pipeline {
    return this.d.pipeline;
  }

  private get store() {
    return this.d.pipeline.store;
  }

  /** The machine holding the host: one of the host's namespace. */
  private consumer(h: StoredHost): Promise<StoredMachine | undefined> {
    const name = h.status.consumer;
    return name ? this.store.machines.get(objectKey(h.namespace, name)) : Promise.resolve(undefined);
  }

  /**
   * The nonce URL the script by MAC chains to, while the host's attempt is live (undefined: none). Once claimed,
   * only the claimant's address is given it again (iPXE asking twice); anyone else gets 'claimed', not the
   * nonce: whoever reads scripts by MAC on the segment cannot claim it a second time and end the attempt.
   */
  async claimUrl(hostKey: string, from?: string): Promise<string | 'claimed' | undefined> {
    const c = await this.claimPath(hostKey, from);
    return typeof c === 'object' ? `${this.d.bases.for(from)}/api/v1/boot/${c.namespace}/${c.name}/${c.nonce}` : c;
  }

  /** As claimUrl, the parts: GRUB claims the same nonce over TFTP. */
  async claimPath(hostKey: string, from?: string): Promise<ClaimPath> {
    const h = await this.store.hosts.get(hostKey);
    const b = h?.attempt;
    if (!h || !b || !LIVE_STATES.has(h.status.state)) return undefined;
    if (b.redeemed && b.redeemed.from !== from) return 'claimed';
    const { nonce } = this.d.secrets.attemptSecrets(h.name, b.id);
    return { namespace: h.namespace, name: h.name, nonce };
  }

  /**
   * The boot nonce of an inspecting host, presented by whoever iPXE is: the first claim gets the inspector's
   * script with the attempt's token, bound to the claimant's address. A wrong or stale nonce gets the same
   * opaque refusal as an unknown host. A claim by anyone but the first redeemer, or a first one from an address
   * other than the one the host holds, ends the attempt in the same batch: it is retried with fresh credentials.
   */
  redeemNonce(c: {
    namespace: string;
    name: string;
    nonce: string;
    from: string;
    mac?: string | undefined;
    /** who claims: iPXE over HTTP (an iPXE script), or the signed GRUB over TFTP (a GRUB configuration) */
    loader?: 'ipxe' | 'grub';
  }) {
    return this.p.run<Redemption>(async () => {
      const unknown = { value: { kind: 'unknown' as const } };
      const h = await this.store.hosts.get(objectKey(c.namespace, c.name));
      const b = h?.attempt;
      if (!h || !b) return unknown;
      const secrets = this.d.secrets.attemptSecrets(h.name, b.id);
      if (!sameSecret(c.nonce, secrets.nonce)) return unknown;
      const cleaning = b.purpose === 'clean';
      const m = await this.consumer(h);
      const v =
        m || cleaning
          ? judgeRedemption(h, { ...c, leased: this.d.leasedAddresses(hostMacs(h)) }, Date.now())
          : undefined;
      if (!v || v.kind === 'unknown') return unknown;
      if (v.kind === 'conflict') {
        const events = [credentialConflict(h, v.message)];
        if (cleaning) {
          // the cleaning starts again with fresh credentials on the next pass
          const { attempt: _, ...fresh } = h;
          return { plan: { writes: [this.p.host(fresh)], events }, value: { kind: 'conflict', message: v.message } };
        }
        const why = { reason: 'CredentialConflict', message: v.message, phase: 'Failed' as const };
        const end = endAttempt(m, h, b.id, why, Date.now(), this.d.policy);
        const ended = end ? this.p.attemptEnded(end) : {};
        const plan: Plan = { ...ended, events: [...events, ...(ended.events ?? [])] };
        return { plan, value: { kind: 'conflict', message: v.message } };
      }
      const base = this.d.bases.for(c.from);
      const common = {
        api: this.d.apiHttps ? base.replace(/^http:/, 'https:') : base,
        token: secrets.token,
        mac: c.mac,
        ca: this.d.ca,
        kernelArgs: this.d.kernelArgs,
      };
      // a GRUB host cannot load an inspector from elsewhere, and no retry changes that: the machine fails now
      if (c.loader === 'grub' && m && !cleaning && !grubInspectorDir(m.spec.inspectionImageURL, this.d.bases.v4)) {
        const message = `this host boots Debian's signed GRUB (Secure Boot or ARM64), which loads only this appliance's assets, over TFTP: spec.inspectionImageURL ${m.spec.inspectionImageURL} is out of its reach`;
        const end = endAttempt(
          m,
          h,
          b.id,
          { reason: 'InspectorUnreachable', message, phase: 'Failed' },
          Date.now(),
          this.d.policy,
        );
        const script = renderGrubInspector(this.d.templates, m.spec.inspectionImageURL, '', this.d.bases.v4);
        return { plan: end ? this.p.attemptEnded(end) : {}, value: { kind: 'ok', script } };
      }
      const answer = (url: string, params: string) =>
        c.loader === 'grub'
          ? renderGrubInspector(this.d.templates, url, params, this.d.bases.v4)
          : renderInspector(this.d.templates, url, h.name, params);
      // cleaning is the bundled inspector's work: the contract's inspector has no such mode
      // our own images are named by the family the host reached us by: one manifest serves IPv4 and IPv6 hosts
      const ours = (url: string) => this.d.bases.rebase(url, c.from);
      const script =
        m && !cleaning
          ? answer(
              ours(m.spec.inspectionImageURL),
              inspectorParams({ ...m, spec: { ...m.spec, targetImageURL: ours(m.spec.targetImageURL) } }, h, common),
            )
          : answer(`${base}/beskar7-inspector/boot`, cleanerParams(h, common));
      if (v.kind === 'again') return { value: { kind: 'ok', script } };
      return { plan: { writes: [this.p.host(v.host)], events: [v.event] }, value: { kind: 'ok', script } };
    });
  }

  /**
   * Runs `decide` for an authorized caller: the attempt's bearer token, from the address that redeemed the
   * nonce or the one the host holds now. A right token from another address has leaked: refused, and
   * remembered as an event (once per attempt) in the same batch.
   */
  private authorized<T>(
    c: InspectorCaller,
    decide: (h: StoredHost, m: StoredMachine) => Promise<Decision<T>> | Decision<T>,
  ): Promise<Result<T> & { misuse?: boolean }> {
    return this.authorizedHost(c, async (h) => {
      const m = await this.consumer(h);
      if (!m) return refuse('conflict', `host ${h.name} is not held by a machine`);
      return decide(h, m);
    });
  }

  /** As authorized, for calls about the host alone (cleaning, progress): no machine needs to hold it. */
  private authorizedHost<T>(
    c: InspectorCaller,
    decide: (h: StoredHost) => Promise<Decision<T>> | Decision<T>,
  ): Promise<Result<T> & { misuse?: boolean }> {
    let misuse = false;
    return this.p
      .run<T>(async () => {
        const h = await this.store.hosts.get(objectKey(c.namespace, c.name));
        const b = h?.attempt;
        if (!h || !b?.redeemed) return refuse('unauthorized', UNAUTHORIZED);
        if (!sameSecret(c.token, this.d.secrets.attemptSecrets(h.name, b.id).token))
          return refuse('unauthorized', UNAUTHORIZED);
        // the redeemer, or the address the host holds now (in proxy mode the inspector runs DHCP of its own)
        if (c.from !== b.redeemed.from && !this.d.leasedAddresses(hostMacs(h)).includes(c.from)) {
          misuse = true;
          // one event per attempt: whoever holds the token cannot write an event per request
          if (b.misused) return refuse('unauthorized', UNAUTHORIZED);
          const msg = `inspector token used from ${c.from}; it was claimed from ${b.redeemed.from} (further uses are counted in beskar7_inspector_credentials_total{result="misuse"})`;
          const marked = { ...h, attempt: { ...b, misused: true } };
          return refuse('unauthorized', UNAUTHORIZED, {
            writes: [this.p.host(marked)],
            events: [credentialMisuse(h, msg)],
          });
        }
        return decide(h);
      })
      .then((r) => (misuse ? { ...r, misuse } : r));
  }

  /** An authorized inspector sent a report that failed its schema: remembered against its host. */
  reportInvalid(c: InspectorCaller, why: string) {
    return this.authorized(c, (h) => ({
      plan: { events: [reportRejected(h, `invalid report body: ${why}`)] },
      value: undefined,
    }));
  }

  /**
   * Report intake (contract §4.2): stored and judged in one batch. The answer says whether the inspector may go
   * on: `approved` false means the host failed the requirements; it is released with a stored power-off.
   */
  acceptReport(c: InspectorCaller, report: InspectionReport) {
    return this.authorized<{ approved: boolean }>(c, async (h, m) => {
      // Ready: judged and approved, its report stored. The same report sent again (its answer lost to a restart)
      // gets the verdict again and changes nothing, so the inspector goes on to the gate; another is refused
      if (h.status.state === 'Ready') {
        const id = h.status.inspectionReportId;
        const stored = id ? await this.store.reports.get(id) : undefined;
        // compared as the store keeps them (the schema's key order)
        const same = JSON.stringify(stored?.report) === JSON.stringify(InspectionReportSchema.parse(report));
        if (same) return { value: { approved: true } };
      }
      const refused = reportRefusal(h, report);
      if (refused) return { refused, plan: { events: [reportRejected(h, refused.error)] } };
      // the other hosts matter only to a machine with requirements that may try another: no copy of them all per report
      const others = m.spec.hardwareRequirements && this.d.policy.tryOtherHosts ? await this.store.hosts.all() : [];
      const o = judgeReport(m, h, report, others, Date.now(), this.d.policy);
      const writes = [
        this.store.reports.put(o.id, o.stored),
        this.p.machine(o.machine),
        this.p.host(o.host),
        ...(o.effects.length ? this.p.boot(o.host, undefined) : []),
      ];
      return { plan: { writes, events: o.events, effects: o.effects }, value: { approved: o.approved } };
    });
  }

  /**
   * Contract §4.3: the gate before the target. Only a host that passed validation gets through, and only with
   * user-data: undefined until its source has it (the inspector polls on 404).
   */
  async bootstrap(c: InspectorCaller): Promise<Result<string | undefined>> {
    const r = await this.authorized<{ m: StoredMachine; h: StoredHost }>(c, (h, m) =>
      h.status.state === 'Ready' ? { value: { m, h } } : refuse('notFound', 'not found'),
    );
    if (!r.ok) return r;
    const source = userDataSource(r.value.m, r.value.h.name);
    if (source.kind === 'generated') return { ok: true, value: source.text };
    if (source.kind === 'url') return { ok: true, value: await this.d.fetchUserData(source.url) };
    const s = await this.store.secrets.get(objectKey(r.value.m.namespace, source.name));
    return { ok: true, value: secretUserData(s, (v) => this.d.secrets.open(v)) };
  }

  /** Contract §4.4: the target is downloaded and verified, kexec is next. */
  provisioned(c: InspectorCaller) {
    return this.authorized<string>(c, (h, m) => {
      const p = provisioned(m, h, Date.now());
      if ('code' in p) return { refused: p };
      const writes = [this.p.machine(p.machine), this.p.host(p.host), ...this.p.boot(p.host, localDisk)];
      return { plan: { writes, events: [p.event] }, value: h.name };
    });
  }

  /** Contract §4.5: the inspector could not deploy; the machine fails now, not at the deployment timeout. */
  provisionFailed(c: InspectorCaller, reason: string) {
    return this.authorized<string | undefined>(c, (h, m) => {
      // a host past or short of deployment gets 202 and no change (§4.5)
      if (h.status.state !== 'Ready') return { value: undefined };
      const f = provisionFailed(m, h, reason, Date.now());
      const writes = [this.p.machine(f.machine), this.p.host(f.host), ...this.p.boot(f.host, undefined)];
      return { plan: { writes, events: [f.event], effects: f.effects }, value: h.name };
    });
  }

  /** A step of the inspector (download, verify, kexec) or a failure it hit: an event on the timeline. */
  acceptProgress(c: InspectorCaller, progress: InspectorProgress) {
    return this.authorizedHost<string>(c, (h) => {
      const n = progressNoted(h, progress);
      return { plan: { writes: [this.p.host(n.host)], events: [n.event] }, value: h.name };
    });
  }

  /** The cleaner's answer: the disks erased (the host is powered off and Available), or why not (CleanFailed). */
  cleaned(c: InspectorCaller, r: { ok: boolean; message: string }) {
    return this.authorizedHost<string>(c, (h) => {
      if (h.status.state !== 'Cleaning' || h.attempt?.purpose !== 'clean')
        return refuse('conflict', `host ${h.name} is not being cleaned`);
      return { plan: this.p.cleaningEnded(cleaningDone(h, r)), value: h.name };
    });
  }
}
