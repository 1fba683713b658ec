import { z } from 'zod';
import { MacSchema } from './mac.js';
import type { InspectionReport } from './resources.js';

/**
 * The report body of the Beskar7 inspector contract v4.2 (§6), as the inspector sends it. Unknown fields are
 * ignored (the contract's additive policy); what the requirements are checked against must be there and sane.
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
  cpus: z
    .array(
      z.object({
        id: z.string().max(64).default(''),
        vendor: z.string().max(256).default(''),
        model: z.string().max(256).default(''),
        cores: z.number().int().min(1).describe('physical cores of this package'),
        threads: z.number().int().min(1).optional(),
        frequency: z.string().max(64).default(''),
      }),
    )
    .min(1, 'one entry per CPU package')
    .max(64)
    .describe('one entry per physical package, never per logical CPU'),
  memory: z
    .array(
      z.object({
        id: z.string().max(64).default(''),
        type: z.string().max(64).default(''),
        capacity: Capacity.describe('with a unit: "32GiB", "16384MB"'),
        speed: z.string().max(64).default(''),
      }),
    )
    .min(1, 'one entry per populated DIMM')
    .max(1024),
  disks: z
    .array(
      z.object({
        name: z.string().min(1).max(256),
        model: z.string().max(256).default(''),
        sizeGB: z.number().positive('a disk of size 0 is a broken report').describe('GiB (2^30 bytes)'),
        type: z.enum(['HDD', 'SSD', 'NVMe']),
        serialNumber: z.string().max(256).default(''),
      }),
    )
    .max(256)
    .default([]),
  nics: z
    .array(
      z.object({
        name: z.string().min(1).max(64),
        macAddress: MacSchema,
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
    cpus: { count: r.cpus.length, cores, threads, model: r.cpus[0]?.model ?? '' },
    memory: { totalGB: round2(r.memory.reduce((n, d) => n + (capacityGiB(d.capacity) as number), 0)) },
    disks: r.disks.map((d) => ({
      device: d.name.startsWith('/') ? d.name : `/dev/${d.name}`,
      sizeGB: d.sizeGB,
      type: d.type,
      model: d.model,
      serial: d.serialNumber,
    })),
    nics: r.nics.map((n) => {
      const speed = speedMbps(n.speed);
      return {
        interface: n.name,
        macAddress: n.macAddress,
        driver: n.driver,
        ipAddresses: n.ipAddresses,
        ...(speed !== undefined ? { speedMbps: speed } : {}),
      };
    }),
  };
}
