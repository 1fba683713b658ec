import { z } from 'zod';
import { MacSchema } from './mac.js';
import type { InspectionReport } from './resources.js';

/**
 * The report body of the Beskar7 inspector contract v4.2 (§6), as the inspector sends it: every field may be
 * left out (Go's omitempty), unknown fields are ignored (the contract's additive policy), and what is missing
 * counts as nothing, so a thin report fails the requirements instead of being refused. Only what cannot be
 * read is refused: a capacity without a unit (§6.1), a malformed MAC, a negative size.
 */
const CAPACITY = /^\s*(\d+(?:\.\d+)?)\s*(GB|GiB|MB|MiB|TB|TiB)\s*$/;

/** Bytes per unit: GB, MB and TB are decimal, the -iB ones binary. A bare number has no unit and is refused. */
const UNIT_BYTES: Record<string, number> = {
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
};

/** A DIMM capacity such as "32GiB" or "16384 MB", in GiB (2^30 bytes). */
export function capacityGiB(s: string): number | undefined {
  const m = CAPACITY.exec(s);
  if (!m) return undefined;
  return (Number(m[1]) * (UNIT_BYTES[m[2] as string] as number)) / 2 ** 30;
}

const Capacity = z
  .string()
  .refine((s) => capacityGiB(s) !== undefined, 'must be a number with a unit: GB, GiB, MB, MiB, TB or TiB');

export const ContractReportSchema = z.object({
  manufacturer: z.string().max(256).default(''),
  model: z.string().max(256).default(''),
  serialNumber: z.string().max(256).default(''),
  bootModeDetected: z.enum(['UEFI', 'Legacy']).default('UEFI'),
  firmwareVersion: z.string().max(256).default(''),
  /** ours, beside the contract's fields: the firmware's SecureBoot variable as the inspector read it */
  secureBoot: z.boolean().optional(),
  /** ours too: the machine's architecture as the kernel names it (uname -m: x86_64, aarch64) */
  architecture: z.string().max(32).optional(),
  cpus: z
    .array(
      z.object({
        id: z.string().max(64).default(''),
        vendor: z.string().max(256).default(''),
        model: z.string().max(256).default(''),
        cores: z.number().int().min(0).default(0).describe('physical cores of this package'),
        threads: z.number().int().min(0).optional(),
        frequency: z.string().max(64).default(''),
      }),
    )
    .max(64)
    .default([])
    .describe('one entry per physical package, never per logical CPU'),
  memory: z
    .array(
      z.object({
        id: z.string().max(64).default(''),
        type: z.string().max(64).default(''),
        capacity: Capacity.optional().describe('with a unit: "32GiB", "16384MB"'),
        speed: z.string().max(64).default(''),
      }),
    )
    .max(1024)
    .default([])
    .describe('one entry per populated DIMM'),
  disks: z
    .array(
      z.object({
        name: z.string().max(256).default(''),
        model: z.string().max(256).default(''),
        sizeGB: z.number().min(0).default(0).describe('summed for minDiskGB (§6.1)'),
        type: z.enum(['HDD', 'SSD', 'NVMe']).optional(),
        serialNumber: z.string().max(256).default(''),
      }),
    )
    .max(256)
    .default([]),
  nics: z
    .array(
      z.object({
        name: z.string().max(64).default(''),
        macAddress: MacSchema.optional(),
        driver: z.string().max(64).default(''),
        speed: z.string().max(32).default(''),
        ipAddresses: z.array(z.string().max(64)).max(64).default([]),
      }),
    )
    .max(256)
    .default([]),
});
export type ContractReport = z.input<typeof ContractReportSchema>;

/** Two decimals: a GiB figure from DIMMs in MB is not worth more digits. */
const round2 = (n: number) => Math.round(n * 100) / 100;

/** "1000Mb/s", "10Gb/s", "1000": Mbit/s; an unknown speed is left out. */
function speedMbps(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(G|M)?/i.exec(s);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * (m[2]?.toUpperCase() === 'G' ? 1000 : 1));
}

/** The contract's wire report in the appliance's normalised form: cores summed over packages, memory in GiB. */
export function normaliseReport(r: z.output<typeof ContractReportSchema>): InspectionReport {
  const cores = r.cpus.reduce((n, c) => n + c.cores, 0);
  const threads = r.cpus.reduce((n, c) => n + Math.max(c.cores, c.threads ?? c.cores), 0);
  return {
    manufacturer: r.manufacturer,
    model: r.model,
    serialNumber: r.serialNumber,
    bootMode: r.bootModeDetected,
    firmwareVersion: r.firmwareVersion,
    ...(r.secureBoot === undefined ? {} : { secureBoot: r.secureBoot }),
    ...(r.architecture === undefined ? {} : { architecture: r.architecture }),
    cpus: { count: r.cpus.length, cores, threads, model: r.cpus[0]?.model ?? '' },
    memory: { totalGB: round2(r.memory.reduce((n, d) => n + (d.capacity ? (capacityGiB(d.capacity) ?? 0) : 0), 0)) },
    disks: r.disks.map((d) => ({
      device: d.name === '' || d.name.startsWith('/') ? d.name : `/dev/${d.name}`,
      sizeGB: d.sizeGB,
      ...(d.type ? { type: d.type } : {}),
      model: d.model,
      serial: d.serialNumber,
    })),
    nics: r.nics.map((n) => {
      const speed = speedMbps(n.speed);
      return {
        interface: n.name,
        ...(n.macAddress ? { macAddress: n.macAddress } : {}),
        driver: n.driver,
        ipAddresses: n.ipAddresses,
        ...(speed !== undefined ? { speedMbps: speed } : {}),
      };
    }),
  };
}
