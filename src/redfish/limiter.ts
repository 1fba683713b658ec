/** A counting semaphore: caps calls in flight, per BMC and across all BMCs. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  /**
   * `holdMs`: a call still running after this long gives its slot back (and runs on). The global cap is for
   * work in progress; a call that is only waiting on a hung BMC must not keep healthy BMCs waiting.
   */
  constructor(
    readonly max: number,
    private readonly holdMs = Infinity,
  ) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
    const timer = Number.isFinite(this.holdMs) ? setTimeout(release, this.holdMs) : undefined;
    try {
      return await fn();
    } finally {
      clearTimeout(timer);
      release();
    }
  }

  get inFlight(): number {
    return this.active;
  }
}
