import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics for the whole appliance, one registry per process (tests make their own). */
export class Metrics {
  readonly registry = new Registry();
  readonly dhcpPackets = new Counter({
    name: 'beskar7_dhcp_packets_total',
    help: 'DHCP packets received, by message type and what we did with them',
    labelNames: ['port', 'type', 'result'] as const,
    registers: [this.registry],
  });
  readonly dhcpMalformed = new Counter({
    name: 'beskar7_dhcp_malformed_total',
    help: 'DHCP packets dropped because they could not be decoded',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly tftpTransfers = new Counter({
    name: 'beskar7_tftp_transfers_total',
    help: 'TFTP read requests, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly tftpRefused = new Counter({
    name: 'beskar7_tftp_malformed_total',
    help: 'Datagrams on the TFTP port refused before a transfer (answered with an ERROR packet), by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly tftpBytes = new Counter({
    name: 'beskar7_tftp_bytes_total',
    help: 'Bytes sent over TFTP',
    registers: [this.registry],
  });
  readonly httpLimited = new Counter({
    name: 'beskar7_http_rate_limited_total',
    help: 'Requests to unauthenticated routes refused with 429: their source address went over http.rateLimit',
    registers: [this.registry],
  });
  readonly scripts = new Counter({
    name: 'beskar7_ipxe_scripts_total',
    help: 'iPXE scripts rendered, by template',
    labelNames: ['script'] as const,
    registers: [this.registry],
  });

  readonly redfishCalls = new Counter({
    name: 'beskar7_redfish_calls_total',
    help: 'Redfish calls, by method and result (HTTP status, or transport)',
    labelNames: ['method', 'result'] as const,
    registers: [this.registry],
  });
  readonly redfishSeconds = new Histogram({
    name: 'beskar7_redfish_call_seconds',
    help: 'Redfish call latency',
    labelNames: ['method'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly inspectorCalls = new Counter({
    name: 'beskar7_inspector_calls_total',
    help: 'Calls of the inspector contract endpoints (report, bootstrap, provisioned, ...), by HTTP status',
    labelNames: ['endpoint', 'status'] as const,
    registers: [this.registry],
  });
  readonly credentials = new Counter({
    name: 'beskar7_inspector_credentials_total',
    help: 'Boot nonce claims and token use: claimed, unknown, conflict (claimed twice or from a foreign address), misuse',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  /** set by the appliance: the state of every host, read at each scrape */
  hostStates: () => Promise<string[]> = async () => [];
  readonly hosts = new Gauge({
    name: 'beskar7_hosts',
    help: 'Hosts by state',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: async () => {
      this.hosts.reset();
      for (const state of await this.hostStates()) this.hosts.inc({ state });
    },
  });

  readonly reconcilePasses = new Counter({
    name: 'beskar7_reconcile_passes_total',
    help: 'Reconcile passes ended: moves while this appliance runs the orchestrator',
    registers: [this.registry],
  });

  /** set by the appliance: whether it runs the orchestrator (always alone; on etcd, while it leads) */
  leading: () => boolean = () => false;
  readonly leader = new Gauge({
    name: 'beskar7_orchestrator_leader',
    help: 'Whether this appliance runs the orchestrator and talks to BMCs (1), or another one leads (0)',
    registers: [this.registry],
    collect: () => {
      this.leader.set(this.leading() ? 1 : 0);
    },
  });

  constructor(withProcessMetrics = false) {
    if (withProcessMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'beskar7_' });
  }

  /** Counter value by name and labels, for /healthz and tests. */
  async value(name: string, labels: Record<string, string> = {}): Promise<number> {
    const m = this.registry.getSingleMetric(name);
    if (!m) return 0;
    const { values } = await m.get();
    return values
      .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
      .reduce((s, v) => s + v.value, 0);
  }
}
