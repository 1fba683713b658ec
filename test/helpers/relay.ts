import dgram from 'node:dgram';
import { once } from 'node:events';
import { type DhcpPacket, decode, encode } from '../../src/boot/dhcp/codec.js';

/**
 * A DHCP relay agent's socket (like perfdhcp's): the server answers to its port, so many simulated clients
 * share it; each reply goes to the exchange waiting for its xid.
 */
export class RelaySocket {
  /** datagrams sent, retries included */
  sent = 0;
  private readonly waiting = new Map<number, (p: DhcpPacket) => void>();

  private constructor(private readonly sock: dgram.Socket) {
    sock.on('message', (m) => {
      try {
        const p = decode(m);
        this.waiting.get(p.xid)?.(p);
      } catch {
        // not a DHCP reply
      }
    });
  }

  static async open(address: string, port = 0): Promise<RelaySocket> {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    sock.bind(port, address);
    await once(sock, 'listening');
    return new RelaySocket(sock);
  }

  get port(): number {
    return this.sock.address().port;
  }

  /** Sends `pkt` to the server and waits for the reply with its xid; up to `tries` sends, the n-th waiting waitMs(n). */
  async exchange(
    pkt: DhcpPacket,
    server: string,
    port: number,
    tries = 5,
    waitMs = (n: number) => 1000 * (n + 1),
  ): Promise<DhcpPacket | undefined> {
    try {
      for (let n = 0; n < tries; n++) {
        const got = new Promise<DhcpPacket | undefined>((resolve) => {
          const timer = setTimeout(() => resolve(undefined), waitMs(n));
          this.waiting.set(pkt.xid, (p) => {
            clearTimeout(timer);
            resolve(p);
          });
        });
        this.sock.send(encode(pkt), port, server);
        this.sent++;
        const p = await got;
        if (p) return p;
      }
      return undefined;
    } finally {
      this.waiting.delete(pkt.xid);
    }
  }

  close(): void {
    this.sock.close();
  }
}
