import type { BootInstruction } from '../domain/boot.js';
import type { Effect } from '../domain/effect.js';
import type { WorkflowEvent } from '../domain/events.js';
import { type Refusal, type RefusalCode, type Result, refusal } from '../domain/refusal.js';
import { hostMacs, keyOf, type StoredHost, type StoredMachine } from '../domain/resources.js';
import type { Guard } from '../store/backend.js';
import type { BatchOp, Store } from '../store/store.js';

/**
 * What one decision changes, committed as one batch: record writes, the events that remember the change, and
 * effects, the BMC work it needs (stored; the reconciler carries them out).
 */
export interface Plan {
  writes?: BatchOp[];
  events?: WorkflowEvent[];
  effects?: Effect[];
}

/**
 * A decision: its plan and its answer. A refusal may come with a plan too (an event that remembers a misused
 * token or a rejected report), committed in the same batch.
 */
export type Decision<T> = { plan?: Plan; value: T } | Refused;
export type Refused = { plan?: Plan; refused: Refusal };

export const refuse = (code: RefusalCode, error: string, plan?: Plan): Refused => ({
  refused: refusal(code, error),
  ...(plan ? { plan } : {}),
});

/**
 * The one write path: `decide` reads the records it needs and returns a plan, and the plan is committed in one
 * batch, all under the store's lock (on etcd: compared against the revisions it read, and decided again when
 * another appliance got there first). Nothing else writes to the store, except bulk restore and pruning.
 */
export class Pipeline {
  constructor(
    readonly store: Store,
    /** called after a commit that wrote records or stored effects: the reconciler looks again */
    readonly changed: () => void = () => undefined,
  ) {}

  async run<T>(decide: () => Promise<Decision<T>> | Decision<T>): Promise<Result<T>> {
    const d = await this.store.transact(async () => {
      const d = await decide();
      await this.store.batch(this.ops(d.plan));
      return d;
    });
    if (d.plan?.writes?.length || d.plan?.effects?.length) this.changed();
    return 'refused' in d ? { ok: false, ...d.refused } : { ok: true, value: d.value };
  }

  /**
   * A plan decided outside the store's lock, on state the caller keeps itself (the DHCP lease table), committed
   * only while `guards` (the revisions it was decided on) still hold: StoreConflict otherwise. An ACK then waits
   * for its own lease write only, not for every read-modify-write section queued before it.
   */
  async commit(plan: Plan, guards: Guard[] = []): Promise<void> {
    await this.store.batch(this.ops(plan), guards);
    if (plan.writes?.length || plan.effects?.length) this.changed();
  }

  private ops(p: Plan | undefined): BatchOp[] {
    if (!p) return [];
    return [
      ...(p.writes ?? []),
      ...(p.events ?? []).map((e) => this.store.putEvent(e)),
      ...(p.effects ?? []).map((e) => this.store.putEffect(e)),
    ];
  }

  // the writes plans are made of

  host(h: StoredHost): BatchOp {
    return this.store.hosts.put(keyOf(h), h);
  }

  machine(m: StoredMachine): BatchOp {
    return this.store.machines.put(keyOf(m), m);
  }

  /** Boot instructions of a host's MACs: `undefined` removes them. */
  boot(h: StoredHost, instr: BootInstruction | undefined): BatchOp[] {
    const boot = this.store.bootInstructions;
    return hostMacs(h).map((mac) => (instr ? boot.put(mac, instr) : boot.del(mac)));
  }

  /** An ended attempt (endAttempt): the machine, the host without its boot instructions, the event, any power-off. */
  attemptEnded(out: { machine: StoredMachine; host: StoredHost; event: WorkflowEvent; effects: Effect[] }): Plan {
    return {
      writes: [this.machine(out.machine), this.host(out.host), ...this.boot(out.host, undefined)],
      events: [out.event],
      effects: out.effects,
    };
  }

  /** A cleaning that ended (cleaningDone): the host without its boot instructions, the event, the power-off. */
  cleaningEnded(out: { host: StoredHost; event: WorkflowEvent; effects: Effect[] }): Plan {
    return {
      writes: [this.host(out.host), ...this.boot(out.host, undefined)],
      events: [out.event],
      effects: out.effects,
    };
  }

  /** True while `cur` is the record `seen` was read as (the cache hands out the same frozen object). */
  static same<T>(seen: T | undefined, cur: T | undefined): boolean {
    return seen === cur || JSON.stringify(seen) === JSON.stringify(cur);
  }
}
