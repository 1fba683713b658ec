/** DHCP option codes and message types we read or write (RFC 2132, 4578, 3004, iPXE). */
export const Opt = {
  Pad: 0,
  SubnetMask: 1,
  Router: 3,
  DnsServers: 6,
  Hostname: 12,
  DomainName: 15,
  VendorSpecific: 43,
  RequestedIp: 50,
  LeaseTime: 51,
  Overload: 52,
  MessageType: 53,
  ServerId: 54,
  ParamRequestList: 55,
  Message: 56,
  MaxMessageSize: 57,
  RenewalTime: 58,
  RebindingTime: 59,
  VendorClass: 60,
  ClientId: 61,
  TftpServerName: 66,
  BootfileName: 67,
  UserClass: 77,
  ClientArch: 93,
  ClientNdi: 94,
  ClientUuid: 97,
  IpxeEncap: 175,
  End: 255,
} as const;

/** iPXE encapsulated option 175 sub-options. */
export const IpxeOpt = { NoPxeDhcp: 176 } as const;

export const MsgType = {
  Discover: 1,
  Offer: 2,
  Request: 3,
  Decline: 4,
  Ack: 5,
  Nak: 6,
  Release: 7,
  Inform: 8,
} as const;
export const msgTypeName = (n: number | undefined): string =>
  (Object.entries(MsgType).find(([, v]) => v === n)?.[0] ?? `type${n ?? '?'}`).toLowerCase();

/** RFC 4578 / IANA processor architecture types (option 93) that we boot. */
export type ArchClass =
  | 'bios'
  | 'efi-ia32'
  | 'efi-x64'
  | 'efi-arm64'
  | 'http-efi-x64'
  | 'http-efi-ia32'
  | 'http-efi-arm64';
export const ARCH_TABLE: Readonly<Record<number, ArchClass>> = {
  0: 'bios',
  6: 'efi-ia32',
  7: 'efi-x64',
  9: 'efi-x64', // EFI BC; in the wild it is x64
  11: 'efi-arm64',
  15: 'http-efi-ia32',
  16: 'http-efi-x64',
  19: 'http-efi-arm64',
};
