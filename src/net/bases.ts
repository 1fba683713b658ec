import { isIPv6 } from 'node:net';

/**
 * The appliance's HTTP base URLs by address family: a client is told the one it reached us by, so a host on an
 * IPv6-only segment gets IPv6 URLs all the way through (entry script, claim, inspector, callbacks).
 */
export class HttpBases {
  constructor(
    /** http://10.0.0.1:80 */
    readonly v4: string,
    /** http://[fd00::1]:80, when the appliance serves IPv6 */
    readonly v6?: string,
  ) {}

  for(from: string | undefined): string {
    return this.v6 && from && isIPv6(from) ? this.v6 : this.v4;
  }

  /** One of our URLs as the client at `from` reaches it; anyone else's URL as it is. */
  rebase(url: string, from: string | undefined): string {
    const to = this.for(from);
    for (const b of [this.v4, this.v6]) if (b && b !== to && url.startsWith(`${b}/`)) return to + url.slice(b.length);
    return url;
  }
}
