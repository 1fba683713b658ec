// A DHCP server on loopback for tests: it answers a relay (replies go unicast to giaddr), on an ephemeral port.
import type { Test } from 'tap';
import type { PoolSpec } from '../../src/boot/dhcp/leases.js';
import { DhcpServer } from '../../src/boot/dhcp/server.js';
import { Metrics } from '../../src/metrics.js';
import type { Store } from '../../src/store/store.js';
import { memoryLogger } from './log.js';

/** The boot files the appliance names by default (config.ts). */
export const BOOT_FILES = {
  bios: 'undionly.kpxe',
  efi: 'snponly.efi',
  ipxeEfi: 'ipxe.efi',
  arm64: 'grubnetaa64.efi',
  secureBoot: 'shimx64.efi',
};

/** Started, and stopped with its store at teardown. `pool`: full mode with these addresses. */
export async function loopbackDhcp(
  t: Test,
  store: Store,
  o: { serverIp: string; relayPort: number; pool?: { poolStart: string; poolEnd: string } },
) {
  const metrics = new Metrics();
  const { log, lines } = memoryLogger();
  const pool: PoolSpec | undefined = o.pool && { ...o.pool, leaseSeconds: 600, offerHoldSeconds: 30, reservations: [] };
  const server = new DhcpServer(
    {
      address: '127.0.0.1',
      port: 0,
      proxyPort: 0,
      maxPacketBytes: 1500,
      pool,
      context: {
        mode: pool ? 'full' : 'proxy',
        serverIp: o.serverIp,
        httpBase: `http://${o.serverIp}:8080`,
        bootFiles: BOOT_FILES,
        ipxeEfiMACs: new Set(),
        clientPort: 68,
        serverPort: o.relayPort,
        ...(pool ? { full: { subnetMask: '255.0.0.0', dnsServers: [], leaseSeconds: 600 } } : {}),
      },
    },
    store,
    log,
    metrics,
  );
  const { port } = await server.start();
  t.teardown(async () => {
    await server.stop();
    await store.close();
  });
  return { server, port, metrics, lines };
}
