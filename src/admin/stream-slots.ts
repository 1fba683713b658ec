/**
 * Live streams open at once (the dashboard's event stream and resource watches, together): each is sent every
 * event, so their number bounds what one event costs the appliance. Bounded in total and per token, so that one
 * client (a dashboard open in many tabs, a runaway watcher) cannot take every slot from the other.
 */
export class StreamSlots {
  private total = 0;
  private readonly held = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly perToken: number,
  ) {}

  /** A slot for a stream opened with `token` (its role), with its release; or why there is none now. */
  take(token: 'admin' | 'read-only'): { release: () => void } | { refused: string } {
    const mine = this.held.get(token) ?? 0;
    if (mine >= this.perToken)
      return {
        refused: `too many live streams open with the ${token} token (api.maxStreamsPerToken ${this.perToken})`,
      };
    if (this.total >= this.max) return { refused: `too many live streams open (api.maxStreams ${this.max})` };
    this.total++;
    this.held.set(token, mine + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        this.held.set(token, (this.held.get(token) ?? 1) - 1);
      },
    };
  }
}
