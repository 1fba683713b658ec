import type { Guard } from '../store/backend.js';
import type { Leadership } from '../store/leader.js';
import type { Store } from '../store/store.js';
import type { Orchestrator } from './reconciler.js';

/** Collections whose changes (made by another appliance) give the leader's orchestrator work. */
const WORK = new Set(['hosts', 'machines', 'effects']);

/**
 * Runs the orchestrator where it may run: always on a lone appliance; on etcd, only while this appliance leads,
 * with its commits fenced by the election key. Any appliance stores BMC effects; the leader carries them out.
 */
export class WorkflowRunner {
  private current?: Orchestrator;
  private stopping?: Promise<void>;

  constructor(
    private readonly store: Store,
    private readonly make: () => Orchestrator,
    private readonly leadership: Leadership | undefined,
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

  async stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.halt();
      await this.leadership?.stop();
    })();
    await this.stopping;
  }
}
