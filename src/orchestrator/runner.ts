import type { HostAction, StoredHost } from '../domain/resources.js';
import type { Logger } from '../log.js';
import type { Guard } from '../store/backend.js';
import type { Leadership } from '../store/leader.js';
import type { Store } from '../store/store.js';
import type { Workflow } from './commands.js';
import type { Orchestrator } from './reconciler.js';
import type { ActionResult } from './transitions.js';

/** Collections whose changes (made by another appliance) give the leader's orchestrator work. */
const WORK = new Set(['hosts', 'machines', 'requests']);

/**
 * Runs the orchestrator where it may run: always on a lone appliance; on etcd, only while this appliance leads,
 * with its commits fenced by the election key. An appliance that does not lead hands BMC work to the leader
 * through the store, and refuses an operator's BMC action with the leader's address.
 */
export class WorkflowRunner implements Workflow {
  private current?: Orchestrator;
  private stopping?: Promise<void>;

  constructor(
    private readonly store: Store,
    private readonly make: () => Orchestrator,
    private readonly leadership: Leadership | undefined,
    private readonly log: Logger,
  ) {}

  get leading(): boolean {
    return !!this.current;
  }

  start(): void {
    const l = this.leadership;
    if (!l) {
      this.run();
      return;
    }
    l.on('elected', (fence: Guard) => {
      this.store.setFence(fence);
      this.run();
    });
    l.on('deposed', () => {
      this.store.setFence(undefined);
      void this.halt();
    });
    this.store.on('change', (c: { collection: string }) => {
      if (WORK.has(c.collection)) this.kick();
    });
    l.start();
  }

  private run(): void {
    const o = this.make();
    this.current = o;
    o.start();
  }

  private async halt(): Promise<void> {
    const o = this.current;
    this.current = undefined;
    await o?.stop();
  }

  kick(): void {
    this.current?.kick();
  }

  async forgetBmc(name: string): Promise<void> {
    await this.current?.forgetBmc(name);
  }

  async hostAction(h: StoredHost, a: HostAction): Promise<ActionResult> {
    if (this.current) return this.current.hostAction(h, a);
    const leader = await this.leadership?.leader().catch(() => undefined);
    return {
      ok: false,
      unavailable: true,
      message: `only the leading appliance talks to BMCs; ask ${leader ?? 'it (none leads right now)'}`,
    };
  }

  async failAttempt(host: string, attempt: string, reason: string, message: string): Promise<void> {
    if (this.current) return this.current.failAttemptOf(host, attempt, reason, message);
    await this.request({ kind: 'failAttempt', host, attempt, reason, message });
  }

  powerDown(host: string): void {
    if (this.current) {
      this.current.powerDownLater(host);
      return;
    }
    this.request({ kind: 'powerDown', host }).catch((e: Error) =>
      this.log.error({ host, err: e.message }, 'power-off request not stored'),
    );
  }

  private request(r: Parameters<Store['requests']['put']>[1]): Promise<void> {
    const key = `${new Date().toISOString()}-${r.host}-${Math.random().toString(36).slice(2, 8)}`;
    return this.store.batch([this.store.requests.put(key, r)]);
  }

  async stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.halt();
      await this.leadership?.stop();
    })();
    await this.stopping;
  }
}
