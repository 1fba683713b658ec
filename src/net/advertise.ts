import type { NetworkInterfaceInfo } from 'node:os';
import { canonicalIpv6, slaacAddress } from '../domain/ipv6.js';

export type Interfaces = NodeJS.Dict<NetworkInterfaceInfo[]>;

/**
 * The address PXE clients are told to use when the config gives none: the IPv4 address of the DHCP interface,
 * else the only non-loopback IPv4 address. Anything else is a guess, so the caller stops and says what to set.
 */
export function chooseAdvertiseAddress(
  ifaces: Interfaces,
  dhcpInterface: string | undefined,
): { ok: true; address: string } | { ok: false; reason: string } {
  const v4 = (list: NetworkInterfaceInfo[] | undefined) => (list ?? []).filter((a) => a.family === 'IPv4');
  if (dhcpInterface) {
    const a = v4(ifaces[dhcpInterface])[0];
    if (a) return { ok: true, address: a.address };
    return { ok: false, reason: `dhcp.interface ${dhcpInterface} has no IPv4 address; set advertiseAddress` };
  }
  const all = Object.entries(ifaces).flatMap(([name, list]) =>
    v4(list)
      .filter((a) => !a.internal)
      .map((a) => `${a.address} (${name})`),
  );
  if (all.length === 1) return { ok: true, address: (all[0] as string).split(' ')[0] as string };
  const found = all.length ? `several IPv4 addresses: ${all.join(', ')}` : 'no IPv4 address but loopback';
  return { ok: false, reason: `this machine has ${found}; set advertiseAddress (or dhcp.interface)` };
}

/**
 * The IPv6 address clients on `ifname` are told to use: a global (not link-local) one, and of those one the
 * interface was given rather than one it formed by SLAAC from its MAC, which may come from our own router
 * advertisements and which Linux lists first.
 */
export function chooseAdvertiseAddress6(
  ifaces: Interfaces,
  ifname: string,
): { ok: true; address: string } | { ok: false; reason: string } {
  const global = (ifaces[ifname] ?? []).filter(
    (x) => x.family === 'IPv6' && !x.address.startsWith('fe80:') && !x.internal,
  );
  const formed = (x: NetworkInterfaceInfo) => canonicalIpv6(x.address) === slaacAddress(x.address, x.mac);
  const a = global.find((x) => !formed(x)) ?? global[0];
  if (a) return { ok: true, address: canonicalIpv6(a.address) };
  return { ok: false, reason: `dhcp6.interface ${ifname} has no global IPv6 address; set dhcp6.advertiseAddress` };
}
