import type dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { setsockopt } from 'sockopt';

const SOL_SOCKET = 1;
const SO_BINDTOIFINDEX = 62; // Linux >= 5.0; takes an int, unlike SO_BINDTODEVICE

/** Restricts a bound UDP socket to one interface (node's dgram has no option for it). */
export function bindToInterface(sock: dgram.Socket, ifname: string): void {
  setsockopt(sock, SOL_SOCKET, SO_BINDTOIFINDEX, Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8')));
}
